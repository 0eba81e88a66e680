// HttpServer: a small HTTP/1.1 server (Boost.Beast) for /metrics and
// /healthz. One thread; each connection serves one request with a deadline
// and is closed. Bounded: request size, connections at once.
//
// Thread-safety: Start and Stop from one thread; the handler runs on the
// server's thread and must be thread-safe with respect to the rest of the
// program.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "flotilla/status.h"

namespace flotilla::nodehost {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// Called with the request target (path and query) of a GET or HEAD.
using HttpHandler = std::function<HttpResponse(const std::string& target)>;

class HttpServer {
 public:
  HttpServer();
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Listens on `address` (host:port; port 0 picks one) and starts the thread.
  // Unavailable when the address cannot be bound.
  Status Start(const std::string& address, HttpHandler handler);
  // The bound address, once started.
  std::string address() const { return address_; }
  // Stops accepting, closes connections, joins the thread. Idempotent.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  std::string address_;
};

}  // namespace flotilla::nodehost
