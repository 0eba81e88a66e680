// Peer authentication over loopback gRPC: mutual TLS, the peer list (in both
// directions: the server checks the client's certificate, the dialer the
// server's) and the deployment secret. Test certificates are made at test
// time with the openssl CLI in a temporary directory (test-only, valid for
// two days).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "proto/raft.grpc.pb.h"
#include "tests/transport/grpc_test_util.h"
#include "transport/convert.h"
#include "transport/peer_auth.h"

namespace flotilla::transport {
namespace {

using namespace std::chrono_literals;
using testing::FastConfig;
using testing::MakeHeartbeat;
using testing::MakeInstall;
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

const char* kNodeExt =
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n";

// A certificate with the subject CN `name`, signed by `ca`, with the
// extensions `ext` (by default: a NodeHost on 127.0.0.1, good for server and
// client use).
bool MakeCert(const std::string& dir, const std::string& name, const std::string& ca,
              const std::string& ext = kNodeExt) {
  std::ofstream(dir + "/ext") << ext;
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
    ASSERT_TRUE(MakeCert(d, "a", "ca") && MakeCert(d, "b", "ca") && MakeCert(d, "c", "ca") &&
                MakeCert(d, "rogue", "other-ca"));
    // What an operator hands a KV client: signed by the same CA, for client
    // use only, on the same host.
    ASSERT_TRUE(
        MakeCert(d, "client", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=clientAuth\n"));
    // A NodeHost certificate for another host than the one dialled.
    ASSERT_TRUE(MakeCert(d, "elsewhere", "ca",
                         "subjectAltName=DNS:elsewhere.example\n"
                         "extendedKeyUsage=serverAuth,clientAuth\n"));
  }

  TransportConfig Tls(const std::string& name, const std::string& cert,
                      std::vector<std::string> peer_names = {}) {
    TransportConfig c = FastConfig(tmp_.Sub(name + "-snap"));
    c.tls.enabled = true;
    c.tls.ca_path = tmp_.Sub("ca.pem");
    c.tls.cert_path = tmp_.Sub(cert + ".pem");
    c.tls.key_path = tmp_.Sub(cert + ".key");
    c.tls.peer_names = std::move(peer_names);
    return c;
  }

  TransportConfig Plain(const std::string& name, const std::string& secret) {
    TransportConfig c = FastConfig(tmp_.Sub(name + "-snap"));
    c.secret = secret;
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

  // Streams a one-file snapshot from `from` to replica 2 of shard 1 and
  // returns whether the sender saw it succeed.
  bool SnapshotGoesThrough(Node& from) {
    std::filesystem::create_directories(tmp_.Sub("src"));
    testing::WriteRandomFile(tmp_.Sub("src/state"), 4096, 7);
    auto source = NewFileSnapshotSource(tmp_.Sub("src"));
    EXPECT_TRUE(source.ok());
    EXPECT_TRUE(from.transport->SendSnapshot({MakeInstall(1, 1, 2, 77), std::move(*source)}).ok());
    EXPECT_TRUE(from.handler.WaitFor([&] { return !from.handler.statuses().empty(); }, 30s));
    std::lock_guard lock(from.handler.mu());
    return !from.handler.statuses().empty() && !from.handler.statuses().back().failed;
  }

  // `from` can neither send `to` a batch nor stream it a snapshot.
  void ExpectRefused(Node& from, Node& to) {
    EXPECT_FALSE(Reaches(from, to));
    EXPECT_FALSE(SnapshotGoesThrough(from));
    EXPECT_EQ(to.handler.MessageCount(), 0u);
    std::lock_guard lock(to.handler.mu());
    EXPECT_TRUE(to.handler.snapshots().empty());
  }

  static constexpr char kSecret[] = "s3cret-s3cret-s3cret-0123456789";
  TempDir tmp_;
  Registry registry_;
};

using testing::LogCapture;

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

TEST_F(GrpcTlsTest, ListedPeersTalkBothWays) {
  auto a = StartNode(Tls("a", "a", {"a", "b"}));
  auto b = StartNode(Tls("b", "b", {"a", "b"}));
  registry_.Add(1, 2, b->transport->address());
  EXPECT_TRUE(Reaches(*a, *b));
  registry_.Add(1, 2, a->transport->address());
  EXPECT_TRUE(Reaches(*b, *a));
  EXPECT_TRUE(SnapshotGoesThrough(*b));
}

TEST_F(GrpcTlsTest, PeerCertificateNotInTheListIsRefused) {
  LogCapture log;
  auto b = StartNode(Tls("b", "b", {"a", "b"}));
  registry_.Add(1, 2, b->transport->address());
  // c's certificate is signed by the cluster's CA, but b does not list it.
  auto c = StartNode(Tls("c", "c"));
  ExpectRefused(*c, *b);
  EXPECT_GE(b->handler.Refused(StreamRefusal::kPeerNotListed), 2u);
  EXPECT_TRUE(log.Contains("peer_not_listed")) << "no clear log line at the server";
  EXPECT_TRUE(log.Contains("are not in this NodeHost's peer list")) << "no reason for the peer";
}

TEST_F(GrpcTlsTest, AClientCertificateCannotSpeakRaft) {
  auto b = StartNode(Tls("b", "b", {"a", "b"}));
  registry_.Add(1, 2, b->transport->address());
  auto client = StartNode(Tls("client", "client"));
  ExpectRefused(*client, *b);
  EXPECT_GE(b->handler.Refused(StreamRefusal::kPeerNotListed), 2u);
}

TEST_F(GrpcTlsTest, TheDialerRefusesAServerNotInItsList) {
  LogCapture log;
  auto a = StartNode(Tls("a", "a", {"a", "b"}));
  // c would accept a, but a does not list c: nothing a sends may reach it.
  auto c = StartNode(Tls("c", "c"));
  registry_.Add(1, 2, c->transport->address());
  EXPECT_FALSE(Reaches(*a, *c));
  EXPECT_EQ(c->handler.MessageCount(), 0u);
  EXPECT_GE(a->handler.Refused(StreamRefusal::kServerNotListed), 1u);
  EXPECT_TRUE(log.Contains("server_not_listed"));
}

TEST_F(GrpcTlsTest, TheDialerRefusesACertificateForAnotherHost) {
  auto a = StartNode(Tls("a", "a"));
  auto elsewhere = StartNode(Tls("elsewhere", "elsewhere"));
  registry_.Add(1, 2, elsewhere->transport->address());
  EXPECT_FALSE(Reaches(*a, *elsewhere));
  EXPECT_EQ(elsewhere->handler.MessageCount(), 0u);
  EXPECT_GE(a->handler.Refused(StreamRefusal::kServerHostMismatch), 1u);
}

TEST_F(GrpcTlsTest, AStreamWithoutTheSecretIsRefused) {
  LogCapture log;
  auto b = StartNode(Plain("b", kSecret));
  registry_.Add(1, 2, b->transport->address());
  auto a = StartNode(Plain("a", ""));
  ExpectRefused(*a, *b);
  EXPECT_GE(b->handler.Refused(StreamRefusal::kNoSecret), 2u);
  EXPECT_TRUE(log.Contains("no_secret"));
  EXPECT_FALSE(log.Contains(kSecret)) << "the secret was logged";
}

TEST_F(GrpcTlsTest, AStreamWithAnotherSecretIsRefused) {
  LogCapture log;
  auto b = StartNode(Plain("b", kSecret));
  registry_.Add(1, 2, b->transport->address());
  const std::string wrong = std::string(kSecret) + "x";
  auto a = StartNode(Plain("a", wrong));
  ExpectRefused(*a, *b);
  // The dialer checks the server's proof first: a gives up before it sends
  // its own (the server's check of the dialer's proof: below).
  EXPECT_GE(a->handler.Refused(StreamRefusal::kWrongSecret), 2u);
  EXPECT_FALSE(log.Contains(kSecret)) << "a secret was logged";
}

// A server without the secret (a process that took over a peer's port)
// gets nothing: the dialer waits for the server's proof before it sends,
// and the secret itself never travels.
TEST_F(GrpcTlsTest, AServerThatCannotProveTheSecretGetsNothing) {
  auto impostor = StartNode(Plain("impostor", ""));
  registry_.Add(1, 2, impostor->transport->address());
  auto a = StartNode(Plain("a", kSecret));
  ExpectRefused(*a, *impostor);
  EXPECT_GE(a->handler.Refused(StreamRefusal::kNoSecret), 2u);
}

// The server's side of the challenge, driven by hand: a stream that answers
// the server's nonce with a wrong proof, or none, is refused and counted.
TEST_F(GrpcTlsTest, AHeaderWithAWrongProofIsRefused) {
  auto b = StartNode(Plain("b", kSecret));
  auto channel = grpc::CreateChannel(b->transport->address(), grpc::InsecureChannelCredentials());
  auto stub = wire::Raft::NewStub(channel);
  for (const std::string& proof : {std::string(64, 'a'), std::string()}) {
    grpc::ClientContext ctx;
    ctx.AddMetadata(kNonceMetadata, std::string(32, '0'));
    auto stream = stub->Batches(&ctx);
    stream->WaitForInitialMetadata();
    EXPECT_EQ(ctx.GetServerInitialMetadata().count(kProofMetadata), 1u) << "no server proof";
    wire::MessageBatch hello;
    MakeHeader(1, "hand", hello.mutable_header());
    hello.mutable_header()->set_secret_proof(proof);
    (void)stream->Write(hello);
    wire::BatchAck ack;
    EXPECT_FALSE(stream->Read(&ack));
    const grpc::Status st = stream->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
  }
  EXPECT_EQ(b->handler.Refused(StreamRefusal::kWrongSecret), 1u);
  EXPECT_EQ(b->handler.Refused(StreamRefusal::kNoSecret), 1u);
  EXPECT_EQ(b->handler.MessageCount(), 0u);
}

TEST_F(GrpcTlsTest, AStreamWithTheSecretWorks) {
  LogCapture log;
  auto b = StartNode(Plain("b", kSecret));
  registry_.Add(1, 2, b->transport->address());
  auto a = StartNode(Plain("a", kSecret));
  EXPECT_TRUE(Reaches(*a, *b));
  EXPECT_TRUE(SnapshotGoesThrough(*a));
  EXPECT_EQ(b->handler.Refused(StreamRefusal::kNoSecret), 0u);
  EXPECT_FALSE(log.Contains(kSecret)) << "the secret was logged";
}

TEST_F(GrpcTlsTest, RefusalsOfOnePeerAreLoggedOncePerInterval) {
  LogCapture log;
  auto b = StartNode(Plain("b", kSecret));
  registry_.Add(1, 2, b->transport->address());
  auto a = StartNode(Plain("a", ""));
  // The lanes reconnect every 20-200 ms: many refusals, one log line.
  for (int i = 0; i < 500 && b->handler.Refused(StreamRefusal::kNoSecret) < 6; ++i) {
    (void)a->transport->Send(MakeHeartbeat(1, 1, 2));
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_GE(b->handler.Refused(StreamRefusal::kNoSecret), 6u);
  EXPECT_EQ(log.Count("(no_secret)"), 1u);
}

}  // namespace
}  // namespace flotilla::transport
