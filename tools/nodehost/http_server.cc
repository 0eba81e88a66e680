#include "tools/nodehost/http_server.h"

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/version.hpp>
#include <charconv>
#include <chrono>
#include <deque>
#include <memory>

namespace flotilla::nodehost {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kRequestDeadline = std::chrono::seconds(10);
constexpr uint64_t kMaxRequestBytes = 16 << 10;
constexpr int kMaxConnections = 64;

// One connection: read one request, answer, close.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const HttpHandler* handler, std::atomic<int>* open)
      : stream_(std::move(socket)), handler_(handler), open_(open) {
    open_->fetch_add(1);
  }
  ~Session() { open_->fetch_sub(1); }

  // Closes the connection (the server needs its slot); its pending read
  // completes with an error and the session ends.
  void Evict() {
    evicted_ = true;
    beast::error_code ignored;
    stream_.socket().close(ignored);
  }
  bool evicted() const { return evicted_; }

  void Run() {
    parser_.body_limit(kMaxRequestBytes);
    parser_.header_limit(kMaxRequestBytes);
    stream_.expires_after(kRequestDeadline);
    http::async_read(stream_, buffer_, parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (!ec) self->Answer();
                     });
  }

 private:
  void Answer() {
    const auto& req = parser_.get();
    res_.version(req.version());
    res_.keep_alive(false);
    res_.set(http::field::server, "flotilla-nodehost");
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      res_.result(http::status::method_not_allowed);
      res_.set(http::field::content_type, "text/plain; charset=utf-8");
      res_.body() = "only GET and HEAD\n";
    } else {
      HttpResponse r = (*handler_)(std::string(req.target()));
      res_.result(static_cast<unsigned>(r.status));
      res_.set(http::field::content_type, r.content_type);
      if (req.method() == http::verb::get) res_.body() = std::move(r.body);
    }
    res_.prepare_payload();
    http::async_write(stream_, res_, [self = shared_from_this()](beast::error_code, size_t) {
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request_parser<http::string_body> parser_;
  http::response<http::string_body> res_;
  const HttpHandler* handler_;
  std::atomic<int>* open_;
  bool evicted_ = false;
};

}  // namespace

// Every member is used on the server's one io thread only.
struct HttpServer::Impl {
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  HttpHandler handler;
  std::atomic<int> open{0};
  // Connections in the order they were accepted. At kMaxConnections the
  // oldest one still open is closed to make room: connections that hold a
  // slot without sending a request (a probe's or an attacker's) never keep
  // a new one, such as a health check, from getting through.
  std::deque<std::weak_ptr<Session>> by_age;

  void MakeRoom() {
    // Sessions that ended or were evicted hold no slot (an evicted one
    // ends once its read fails): forget them, so the list stays bounded.
    std::erase_if(by_age, [](const std::weak_ptr<Session>& w) {
      std::shared_ptr<Session> s = w.lock();
      return !s || s->evicted();
    });
    if (by_age.size() < static_cast<size_t>(kMaxConnections)) return;
    if (std::shared_ptr<Session> oldest = by_age.front().lock()) oldest->Evict();
    by_age.pop_front();
  }

  void Accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        MakeRoom();
        auto session = std::make_shared<Session>(std::move(socket), &handler, &open);
        by_age.push_back(session);
        session->Run();
      }
      Accept();
    });
  }
};

HttpServer::HttpServer() : impl_(std::make_unique<Impl>()) {}
HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Start(const std::string& address, HttpHandler handler) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return Status::InvalidArgument("metrics address needs host:port");
  beast::error_code ec;
  const auto ip = asio::ip::make_address(address.substr(0, colon), ec);
  if (ec) return Status::InvalidArgument("metrics address " + address + ": " + ec.message());
  // Parsed whole, as the config checks it: "18351xyz" or 99999 is an error,
  // not port 18351 or a truncated one.
  uint16_t port = 0;
  const std::string digits = address.substr(colon + 1);
  const auto [end, perr] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (digits.empty() || perr != std::errc() || end != digits.data() + digits.size())
    return Status::InvalidArgument("metrics address " + address + ": bad port");
  const tcp::endpoint ep(ip, port);
  impl_->handler = std::move(handler);
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::Unavailable("cannot listen on " + address + ": " + ec.message());
  address_ =
      address.substr(0, colon) + ":" + std::to_string(impl_->acceptor.local_endpoint().port());
  impl_->Accept();
  thread_ = std::thread([this] { impl_->io.run(); });
  return Status::Ok();
}

void HttpServer::Stop() {
  if (!thread_.joinable()) return;
  asio::post(impl_->io, [this] {
    beast::error_code ignored;
    impl_->acceptor.close(ignored);
    impl_->io.stop();
  });
  thread_.join();
}

}  // namespace flotilla::nodehost
