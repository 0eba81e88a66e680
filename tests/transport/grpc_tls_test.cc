// Mutual TLS over loopback gRPC. Test certificates are made at test time with
// the openssl CLI in a temporary directory (test-only, valid for two days).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include "tests/transport/grpc_test_util.h"

namespace flotilla::transport {
namespace {

using namespace std::chrono_literals;
using testing::FastConfig;
using testing::MakeHeartbeat;
using testing::Node;
using testing::TempDir;

bool RunQuiet(const std::string& cmd) {
  return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0;
}

const char* kNewKey = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

bool MakeCa(const std::string& dir, const std::string& name) {
  return RunQuiet("openssl req -x509 " + std::string(kNewKey) + " -keyout " + dir + "/" + name +
                  ".key -out " + dir + "/" + name + ".pem -days 2 -subj /CN=" + name);
}

// A certificate for a NodeHost on 127.0.0.1, good for server and client use.
bool MakeCert(const std::string& dir, const std::string& name, const std::string& ca) {
  std::ofstream(dir + "/ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                 "extendedKeyUsage=serverAuth,clientAuth\n";
  const std::string p = dir + "/" + name;
  return RunQuiet("openssl req " + std::string(kNewKey) + " -keyout " + p + ".key -out " + p +
                  ".csr -subj /CN=" + name) &&
         RunQuiet("openssl x509 -req -in " + p + ".csr -CA " + dir + "/" + ca + ".pem -CAkey " +
                  dir + "/" + ca + ".key -CAcreateserial -out " + p + ".pem -days 2 -extfile " +
                  dir + "/ext");
}

class GrpcTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!RunQuiet("openssl version")) GTEST_SKIP() << "openssl CLI not installed";
    const std::string d = tmp_.path();
    ASSERT_TRUE(MakeCa(d, "ca") && MakeCa(d, "other-ca"));
    ASSERT_TRUE(MakeCert(d, "a", "ca") && MakeCert(d, "b", "ca") &&
                MakeCert(d, "rogue", "other-ca"));
  }

  TransportConfig Tls(const std::string& name, const std::string& cert) {
    TransportConfig c = FastConfig(tmp_.Sub(name + "-snap"));
    c.tls.enabled = true;
    c.tls.ca_path = tmp_.Sub("ca.pem");
    c.tls.cert_path = tmp_.Sub(cert + ".pem");
    c.tls.key_path = tmp_.Sub(cert + ".key");
    return c;
  }

  std::unique_ptr<Node> StartNode(TransportConfig c) {
    auto n = std::make_unique<Node>(std::move(c), &registry_);
    Status s = n->transport->Start();
    EXPECT_TRUE(s.ok()) << s.ToString();
    return n;
  }

  // Sends heartbeats from `from` until `to` receives one or the sender is
  // told the peer is unreachable (3 times: a refused peer stays refused).
  bool Reaches(Node& from, Node& to) {
    for (int i = 0; i < 200; ++i) {
      (void)from.transport->Send(MakeHeartbeat(1, 1, 2));
      if (to.handler.WaitFor([&] { return !to.handler.messages().empty(); }, 20ms)) return true;
      std::lock_guard lock(from.handler.mu());
      if (from.handler.unreachable().size() >= 3) return false;
    }
    return false;
  }

  TempDir tmp_;
  Registry registry_;
};

TEST_F(GrpcTlsTest, PeersWithValidCertificatesTalk) {
  auto a = StartNode(Tls("a", "a"));
  auto b = StartNode(Tls("b", "b"));
  registry_.Add(1, 2, b->transport->address());
  EXPECT_TRUE(Reaches(*a, *b));
}

TEST_F(GrpcTlsTest, PeerWithCertificateFromAnotherCaIsRefused) {
  auto b = StartNode(Tls("b", "b"));
  registry_.Add(1, 2, b->transport->address());
  // Trusts the right CA, so it could verify b, but b cannot verify it.
  auto rogue = StartNode(Tls("rogue", "rogue"));
  EXPECT_FALSE(Reaches(*rogue, *b));
  EXPECT_EQ(b->handler.MessageCount(), 0u);
}

TEST_F(GrpcTlsTest, PeerWithoutCertificateIsRefused) {
  auto b = StartNode(Tls("b", "b"));
  registry_.Add(1, 2, b->transport->address());
  auto plain = StartNode(FastConfig(tmp_.Sub("plain-snap")));
  EXPECT_FALSE(Reaches(*plain, *b));
  EXPECT_EQ(b->handler.MessageCount(), 0u);
}

TEST_F(GrpcTlsTest, MissingFilesFailStart) {
  TransportConfig c = Tls("a", "a");
  c.tls.key_path = tmp_.Sub("no-such.key");
  Node n(c, &registry_);
  EXPECT_EQ(n.transport->Start().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flotilla::transport
