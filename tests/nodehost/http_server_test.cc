// The daemon's HTTP server under connections that never send a request.
#include "tools/nodehost/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace flotilla::nodehost {
namespace {

// A connected TCP socket to 127.0.0.1:port (-1 on failure).
int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// GET `path` with a 3 s receive timeout; the whole answer, or "" on failure.
std::string Get(int port, const std::string& path) {
  const int fd = Connect(port);
  if (fd < 0) return "";
  timeval tv{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: probe\r\n\r\n";
  std::string out;
  if (::send(fd, req.data(), req.size(), 0) == static_cast<ssize_t>(req.size())) {
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

// Issue 14: 64 idle connections made /healthz unreachable (each held a slot
// for its 10 s request deadline, and the 65th was closed at once). The
// oldest idle connection now makes room for a new one.
TEST(HttpServer, IdleConnectionsNeverKeepAHealthCheckOut) {
  HttpServer server;
  ASSERT_TRUE(server
                  .Start("127.0.0.1:0",
                         [](const std::string&) {
                           return HttpResponse{200, "text/plain", "ok\n"};
                         })
                  .ok());
  const int port = std::stoi(server.address().substr(server.address().rfind(':') + 1));
  std::vector<int> idle;
  for (int i = 0; i < 200; ++i) {
    const int fd = Connect(port);
    if (fd >= 0) idle.push_back(fd);
  }
  ASSERT_EQ(idle.size(), 200u);
  const std::string answer = Get(port, "/healthz");
  EXPECT_NE(answer.find("200 OK"), std::string::npos) << answer;
  EXPECT_NE(answer.find("ok\n"), std::string::npos) << answer;
  for (int fd : idle) ::close(fd);
  server.Stop();
}

}  // namespace
}  // namespace flotilla::nodehost
