// Authentication of peers on the raft port (docs/security.md): the names a
// TLS certificate holds, the check of an incoming stream (its client
// certificate against the peer list, its deployment secret), the dialer's
// check of the server's certificate, and a log of refusals that names each
// refused peer at most once per interval.
//
// Exposes gRPC types: include only from transport/grpc_*.cc, transport/peer_auth.cc
// and the tools that serve gRPC themselves (tools/nodehost).
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_verifier.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "transport/config.h"
#include "transport/transport.h"

namespace flotilla::transport {

// The deployment secret's challenge-response (docs/security.md). The dialer
// sends a fresh nonce in its request metadata; the server answers, in its
// initial metadata, with its own nonce and, when it has a secret, its proof
// HMAC-SHA256(secret, "flotilla server" | client nonce | server nonce); the
// dialer checks that proof before it sends anything and proves itself in
// its stream's header with HMAC-SHA256(secret, "flotilla client" | server
// nonce | client nonce). Both sides are authenticated, and the secret never
// travels: a process that takes over a peer's port learns nothing from it.
inline constexpr char kNonceMetadata[] = "x-flotilla-nonce";
inline constexpr char kProofMetadata[] = "x-flotilla-proof";

// The host of an incoming stream's peer ("ipv4:127.0.0.1"): gRPC names the
// peer "ipv4:127.0.0.1:54321", and the port changes with every connection,
// so refusals are logged per host.
std::string PeerHost(const grpc::ServerContextBase& ctx);

// The identity an incoming stream counts against the per-peer limits with
// (flotilla/raft_port_limits.h): with TLS, the peer-list name its verified
// certificate holds ("cert:<name>"; without a list, all its names); without
// TLS, the source address of its accepted header ("addr:<address>"), which
// only the deployment secret keeps an outsider from choosing freely.
std::string PeerIdentity(const TransportConfig& config, const grpc::ServerContextBase& ctx,
                         std::string_view source_address);

// Compares without an early exit, so that the time taken does not tell how
// many leading bytes of a guess were right. The length is not hidden.
bool ConstantTimeEqual(std::string_view a, std::string_view b);

// The names of the verified certificate behind `ctx` that an identity list
// may name: its DNS and IP subjectAltNames and its subject's common name.
// Empty when the peer presented no verified certificate.
std::vector<std::string> CertificateNames(const grpc::AuthContext& ctx);

// True when one of `names` equals one of `allowed` (exactly, no wildcards:
// a list names certificates, not host patterns).
bool AnyListed(const std::vector<std::string>& names, const std::vector<std::string>& allowed);

// "a, b, c" with every name escaped for a log line; "(none)" when empty.
std::string NamesForLog(const std::vector<std::string>& names);

// Counts each refused stream or connection (Handler::HandleStreamRefused)
// and logs it at most once per (reason, peer host) and kLogInterval, so
// that a peer retrying every 50 ms cannot flood the log. Shared with the
// dialer's certificate verifier, which gRPC may run after the transport
// stopped: Detach() makes it silent from then on.
//
// Thread-safety: thread-safe.
class RefusalLog {
 public:
  static constexpr auto kLogInterval = std::chrono::seconds(10);
  static constexpr size_t kMaxLoggedPeers = 4096;

  explicit RefusalLog(Handler* handler) : handler_(handler) {}
  // `peer` names the other side (its address); `detail` says what was wrong
  // and must not hold a secret.
  void Refused(StreamRefusal why, std::string_view peer, std::string_view detail);
  void Detach();

 private:
  std::mutex mu_;
  Handler* handler_;  // guarded by mu_; null once detached
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> logged_;  // guarded by mu_
};

// The server's side of one stream's challenge.
struct ServerChallenge {
  std::string client_nonce;
  std::string server_nonce;
};

// Checks an incoming Batches or Snapshot stream before anything it sends is
// read: with TLS and a peer list, the client certificate must hold a listed
// name; with a secret, the stream must bring a nonce. Then adds this side of
// the challenge to the initial metadata (always a nonce, so that a dialer
// with a secret learns at once that this side has none), which the caller
// sends before its first read. Returns OK, or the status to end the stream
// with after counting and logging the refusal.
grpc::Status CheckIncomingPeer(const TransportConfig& config, grpc::ServerContextBase* ctx,
                               RefusalLog* log, ServerChallenge* challenge);

// Checks the dialer's proof from its stream's header (when this side has a
// secret). Returns OK, or the status to end the stream with after counting
// and logging the refusal.
grpc::Status CheckPeerProof(const TransportConfig& config, const ServerChallenge& challenge,
                            std::string_view proof, std::string_view peer, RefusalLog* log);

// The dialer's side of one stream's challenge.
//
// Thread-safety: used by the one thread that runs the stream.
class ClientChallenge {
 public:
  explicit ClientChallenge(const std::string& secret);
  // Adds the nonce to the request metadata, before the call starts.
  void AddTo(grpc::ClientContext* ctx) const;
  bool active() const { return !secret_.empty(); }
  // After the server's initial metadata arrived (REQUIRES: active()):
  // NotFound when the server sent none (it ended the stream: its status
  // says why); Rejected, after counting and logging the refusal, when it
  // does not prove the secret; otherwise OK and *proof set for the header.
  Status Answer(const grpc::ClientContext& ctx, std::string_view peer, RefusalLog* log,
                std::string* proof) const;

 private:
  const std::string& secret_;
  std::string nonce_;
};

// The dialer's TLS credentials: the CA and this NodeHost's certificate, and
// a verifier that accepts a server only when its certificate is valid for
// the address dialled (DNS or IP subjectAltName, or the CN when it has
// none) and, with a peer list, holds a listed name.
Result<std::shared_ptr<grpc::ChannelCredentials>> PeerChannelCredentials(
    const TlsConfig& tls, const std::string& ca_pem, const std::string& cert_pem,
    const std::string& key_pem, std::shared_ptr<RefusalLog> log);

}  // namespace flotilla::transport
