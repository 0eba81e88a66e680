#include "transport/peer_auth.h"
#include "engine/log/log.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cctype>

namespace flotilla::transport {
namespace {

// The host of "host:port", "[v6]:port", or of an address without a port.
std::string_view HostOf(std::string_view address) {
  if (address.starts_with('[')) {
    const size_t end = address.find(']');
    return end == std::string_view::npos ? address : address.substr(1, end - 1);
  }
  const size_t colon = address.rfind(':');
  // More than one colon without brackets: an IPv6 address without a port.
  if (colon == std::string_view::npos || address.find(':') != colon) return address;
  return address.substr(0, colon);
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// RFC 6125: a DNS name matches itself, case aside; "*.example.com" matches
// one label in its place ("a.example.com", not "a.b.example.com").
bool DnsMatches(std::string_view host, std::string_view pattern) {
  if (EqualsIgnoreCase(host, pattern)) return true;
  if (!pattern.starts_with("*.") || pattern.size() < 4) return false;
  const size_t dot = host.find('.');
  return dot != std::string_view::npos && dot > 0 &&
         EqualsIgnoreCase(host.substr(dot + 1), pattern.substr(2));
}

// The dialer's check of a server's certificate, run by gRPC after the TLS
// handshake verified the chain against the CA.
class PeerVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  PeerVerifier(std::vector<std::string> peer_names, std::shared_ptr<RefusalLog> log)
      : peer_names_(std::move(peer_names)), log_(std::move(log)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>, grpc::Status* sync_status) override {
    std::vector<std::string> sans;
    for (const auto& n : request->dns_names()) sans.emplace_back(n.data(), n.size());
    for (const auto& n : request->ip_names()) sans.emplace_back(n.data(), n.size());
    const grpc::string_ref cn = request->common_name();
    const std::string target(request->target_name().data(), request->target_name().size());
    *sync_status = Check(target, std::move(sans), std::string(cn.data(), cn.size()));
    return true;  // synchronous
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  grpc::Status Check(const std::string& target, std::vector<std::string> sans,
                     const std::string& cn) {
    const std::string_view host = HostOf(target);
    // RFC 6125: a certificate with subjectAltNames is valid for those only;
    // the CN counts as a host name only in a certificate without any.
    const bool host_ok =
        sans.empty() ? DnsMatches(host, cn)
                     : std::any_of(sans.begin(), sans.end(),
                                   [&](const std::string& n) { return DnsMatches(host, n); });
    std::vector<std::string> names = std::move(sans);
    if (!cn.empty()) names.push_back(cn);
    std::string detail;
    StreamRefusal why;
    if (!host_ok) {
      why = StreamRefusal::kServerHostMismatch;
      detail = "its certificate (names " + NamesForLog(names) + ") is not valid for " +
               EscapeForLog(host);
    } else if (!peer_names_.empty() && !AnyListed(names, peer_names_)) {
      why = StreamRefusal::kServerNotListed;
      detail = "its certificate's names " + NamesForLog(names) + " are not in the peer list";
    } else {
      return grpc::Status::OK;
    }
    log_->Refused(why, target, detail);
    return {grpc::StatusCode::UNAUTHENTICATED, "server at " + EscapeForLog(target) + ": " + detail};
  }

  const std::vector<std::string> peer_names_;
  const std::shared_ptr<RefusalLog> log_;
};

constexpr size_t kNonceBytes = 16;
constexpr std::string_view kServerLabel = "flotilla server";
constexpr std::string_view kClientLabel = "flotilla client";

std::string Hex(const unsigned char* p, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[p[i] >> 4]);
    out.push_back(kHex[p[i] & 15]);
  }
  return out;
}

std::string NewNonce() {
  unsigned char bytes[kNonceBytes];
  // A failing RAND_bytes (no entropy source) leaves a nonce that no check
  // accepts, never a predictable one.
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return "";
  return Hex(bytes, sizeof(bytes));
}

bool WellFormedNonce(std::string_view n) {
  return n.size() == 2 * kNonceBytes &&
         std::all_of(n.begin(), n.end(), [](char c) { return std::isxdigit(c) != 0; });
}

// HMAC-SHA256(secret, label | 0 | first | second), in hex.
std::string Proof(std::string_view secret, std::string_view label, std::string_view first,
                  std::string_view second) {
  std::string data(label);
  data.push_back('\0');
  data.append(first).append(second);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac,
           &len) == nullptr) {
    return "";
  }
  return Hex(mac, len);
}

template <typename Map>
std::string MetadataValue(const Map& md, const char* key) {
  const auto it = md.find(key);
  return it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

}  // namespace

std::string_view StreamRefusalName(StreamRefusal r) {
  switch (r) {
    case StreamRefusal::kDeploymentId:
      return "deployment_id";
    case StreamRefusal::kPeerNotListed:
      return "peer_not_listed";
    case StreamRefusal::kServerNotListed:
      return "server_not_listed";
    case StreamRefusal::kServerHostMismatch:
      return "server_host_mismatch";
    case StreamRefusal::kNoSecret:
      return "no_secret";
    case StreamRefusal::kWrongSecret:
      return "wrong_secret";
    case StreamRefusal::kPeerBatchStreams:
      return "peer_batch_streams";
    case StreamRefusal::kPeerInflightBytes:
      return "peer_inflight_bytes";
    case StreamRefusal::kSnapshotSender:
      return "snapshot_sender";
    case StreamRefusal::kBatchStreams:
      return "batch_streams";
    case StreamRefusal::kBatchInflightBytes:
      return "batch_inflight_bytes";
    case StreamRefusal::kCount:
      break;
  }
  return "unknown";
}

std::string EscapeForLog(std::string_view in) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < in.size() && i < 128; ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  if (in.size() > 128) out += "...";
  return out;
}

std::string PeerHost(const grpc::ServerContextBase& ctx) {
  const std::string peer = ctx.peer();
  const size_t colon = peer.rfind(':');
  return colon == std::string::npos ? peer : peer.substr(0, colon);
}

std::string PeerIdentity(const TransportConfig& config, const grpc::ServerContextBase& ctx,
                         std::string_view source_address) {
  if (config.tls.enabled) {
    const std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
    const std::vector<std::string> names =
        auth ? CertificateNames(*auth) : std::vector<std::string>();
    // With a peer list, the listed name the certificate holds: one peer
    // however many names its certificate carries.
    for (const std::string& n : names) {
      if (std::find(config.tls.peer_names.begin(), config.tls.peer_names.end(), n) !=
          config.tls.peer_names.end()) {
        return "cert:" + n;
      }
    }
    std::string all = "cert:";
    for (const std::string& n : names) all += n + ",";
    return all;
  }
  return "addr:" + std::string(source_address);
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::vector<std::string> CertificateNames(const grpc::AuthContext& ctx) {
  std::vector<std::string> names;
  if (!ctx.IsPeerAuthenticated()) return names;
  for (const char* property :
       {GRPC_PEER_DNS_PROPERTY_NAME, GRPC_PEER_IP_PROPERTY_NAME, GRPC_X509_CN_PROPERTY_NAME}) {
    for (const grpc::string_ref& v : ctx.FindPropertyValues(property)) {
      names.emplace_back(v.data(), v.size());
    }
  }
  return names;
}

bool AnyListed(const std::vector<std::string>& names, const std::vector<std::string>& allowed) {
  return std::any_of(names.begin(), names.end(), [&](const std::string& n) {
    return std::find(allowed.begin(), allowed.end(), n) != allowed.end();
  });
}

std::string NamesForLog(const std::vector<std::string>& names) {
  if (names.empty()) return "(none)";
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + EscapeForLog(n);
  return out;
}

void RefusalLog::Refused(StreamRefusal why, std::string_view peer, std::string_view detail) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  if (handler_ == nullptr) return;
  handler_->HandleStreamRefused(why);
  if (logged_.size() >= kMaxLoggedPeers) logged_.clear();
  // A bound over all peers is logged once per interval in all: the peers it
  // refuses may be any number of claimed addresses.
  const bool total =
      why == StreamRefusal::kBatchStreams || why == StreamRefusal::kBatchInflightBytes;
  std::string key = std::string(StreamRefusalName(why)) + (total ? "" : " " + std::string(peer));
  auto [it, fresh] = logged_.try_emplace(std::move(key), now);
  if (!fresh && now - it->second < kLogInterval) return;
  it->second = now;
  Log().error("transport: refused {} ({}): {} (logged at most once per 10 s {})",
              EscapeForLog(peer), StreamRefusalName(why), detail, total ? "in all" : "per peer");
}

void RefusalLog::Detach() {
  std::lock_guard lock(mu_);
  handler_ = nullptr;
}

grpc::Status CheckIncomingPeer(const TransportConfig& config, grpc::ServerContextBase* ctx,
                               RefusalLog* log, ServerChallenge* challenge) {
  std::string detail;
  StreamRefusal why = StreamRefusal::kCount;
  grpc::StatusCode code = grpc::StatusCode::UNAUTHENTICATED;
  if (config.tls.enabled && !config.tls.peer_names.empty()) {
    const std::shared_ptr<const grpc::AuthContext> auth = ctx->auth_context();
    const std::vector<std::string> names =
        auth ? CertificateNames(*auth) : std::vector<std::string>();
    if (!AnyListed(names, config.tls.peer_names)) {
      why = StreamRefusal::kPeerNotListed;
      code = grpc::StatusCode::PERMISSION_DENIED;
      detail = "its certificate's names " + NamesForLog(names) +
               " are not in this NodeHost's peer list (a client's certificate cannot speak Raft)";
    }
  }
  challenge->client_nonce = MetadataValue(ctx->client_metadata(), kNonceMetadata);
  if (why == StreamRefusal::kCount && !config.secret.empty() &&
      !WellFormedNonce(challenge->client_nonce)) {
    why = StreamRefusal::kNoSecret;
    detail = "the stream does not take part in the deployment secret's challenge";
  }
  if (why != StreamRefusal::kCount) {
    log->Refused(why, PeerHost(*ctx), detail);
    return {code, "refused by the peer: " + detail};
  }
  challenge->server_nonce = NewNonce();
  ctx->AddInitialMetadata(kNonceMetadata, challenge->server_nonce);
  if (!config.secret.empty()) {
    ctx->AddInitialMetadata(
        kProofMetadata,
        Proof(config.secret, kServerLabel, challenge->client_nonce, challenge->server_nonce));
  }
  return grpc::Status::OK;
}

grpc::Status CheckPeerProof(const TransportConfig& config, const ServerChallenge& challenge,
                            std::string_view proof, std::string_view peer, RefusalLog* log) {
  if (config.secret.empty()) return grpc::Status::OK;
  const std::string expected =
      Proof(config.secret, kClientLabel, challenge.server_nonce, challenge.client_nonce);
  if (!expected.empty() && ConstantTimeEqual(proof, expected)) return grpc::Status::OK;
  const StreamRefusal why = proof.empty() ? StreamRefusal::kNoSecret : StreamRefusal::kWrongSecret;
  const std::string detail = proof.empty() ? "the stream carries no proof of the deployment secret"
                                           : "the stream proves another deployment secret";
  log->Refused(why, peer, detail);
  return {grpc::StatusCode::UNAUTHENTICATED, "refused by the peer: " + detail};
}

ClientChallenge::ClientChallenge(const std::string& secret)
    : secret_(secret), nonce_(secret.empty() ? std::string() : NewNonce()) {}

void ClientChallenge::AddTo(grpc::ClientContext* ctx) const {
  if (active()) ctx->AddMetadata(kNonceMetadata, nonce_);
}

Status ClientChallenge::Answer(const grpc::ClientContext& ctx, std::string_view peer,
                               RefusalLog* log, std::string* proof) const {
  const auto& md = ctx.GetServerInitialMetadata();
  const std::string server_nonce = MetadataValue(md, kNonceMetadata);
  if (!WellFormedNonce(server_nonce)) return Status::NotFound("no challenge from the server");
  const std::string got = MetadataValue(md, kProofMetadata);
  const std::string expected = Proof(secret_, kServerLabel, nonce_, server_nonce);
  if (expected.empty() || !ConstantTimeEqual(got, expected)) {
    const StreamRefusal why = got.empty() ? StreamRefusal::kNoSecret : StreamRefusal::kWrongSecret;
    const std::string detail = got.empty() ? "the server does not prove the deployment secret"
                                           : "the server proves another deployment secret";
    log->Refused(why, peer, detail);
    return Status::Rejected(detail);
  }
  *proof = Proof(secret_, kClientLabel, server_nonce, nonce_);
  return Status::Ok();
}

Result<std::shared_ptr<grpc::ChannelCredentials>> PeerChannelCredentials(
    const TlsConfig& tls, const std::string& ca_pem, const std::string& cert_pem,
    const std::string& key_pem, std::shared_ptr<RefusalLog> log) {
  namespace ex = grpc::experimental;
  auto provider = std::make_shared<ex::StaticDataCertificateProvider>(
      ca_pem, std::vector<ex::IdentityKeyCertPair>{{key_pem, cert_pem}});
  ex::TlsChannelCredentialsOptions o;
  o.set_certificate_provider(provider);
  o.watch_root_certs();
  o.watch_identity_key_cert_pairs();
  o.set_verify_server_certs(true);
  // The verifier checks the host name itself (gRPC's own check would be
  // replaced by it anyway); every call uses the channel's own target.
  o.set_check_call_host(false);
  o.set_certificate_verifier(
      ex::ExternalCertificateVerifier::Create<PeerVerifier>(tls.peer_names, std::move(log)));
  std::shared_ptr<grpc::ChannelCredentials> creds = ex::TlsCredentials(o);
  if (creds == nullptr) return Status::InvalidArgument("cannot build TLS channel credentials");
  return creds;
}

}  // namespace flotilla::transport
