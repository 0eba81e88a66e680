// Runs the protocol scenarios in tests/raft/testdata/*.txt against the core.
//
// A scenario file is a sequence of blocks:
//
//   # comments
//   command arg arg key=value
//   ----
//   expected output (ends at the first blank line)
//
// Each command drives the Harness (harness.h); its output is compared with
// the expected text. FLOTILLA_REWRITE=1 rewrites the files with the actual
// output (review the diff before committing it).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "engine/raft/conf_change.h"
#include "tests/raft/harness.h"

namespace flotilla::raft::testing {
namespace {

struct Block {
  int line = 0;
  std::string command;
  std::string expected;
};

struct Command {
  std::string name;
  std::vector<std::string> args;               // positional
  std::map<std::string, std::string> options;  // key=value
};

Command Parse(const std::string& text) {
  Command c;
  std::istringstream in(text);
  std::string tok;
  in >> c.name;
  while (in >> tok) {
    const auto eq = tok.find('=');
    if (eq == std::string::npos) {
      c.args.push_back(tok);
    } else {
      c.options[tok.substr(0, eq)] = tok.substr(eq + 1);
    }
  }
  return c;
}

std::vector<ReplicaId> IdList(const std::string& s) {
  std::vector<ReplicaId> ids;
  std::istringstream in(s);
  std::string tok;
  while (std::getline(in, tok, ',')) {
    if (!tok.empty()) ids.push_back(std::stoull(tok));
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::vector<Block> ReadBlocks(const std::string& path) {
  std::ifstream in(path);
  std::vector<Block> blocks;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line[0] == '#') continue;
    Block b;
    b.line = lineno;
    b.command = line;
    while (std::getline(in, line)) {
      ++lineno;
      if (line == "----") break;
      b.command += " " + line;  // a command may continue on the next lines
    }
    while (std::getline(in, line)) {
      ++lineno;
      if (line.empty()) break;
      b.expected += line + "\n";
    }
    blocks.push_back(std::move(b));
  }
  return blocks;
}

// Rewrites `path` keeping comments and commands and replacing each block's
// expected output with `actual` (one string per block, newline-terminated).
void WriteBlocks(const std::string& path, const std::vector<std::string>& actual) {
  std::ifstream in(path);
  std::ostringstream out;
  std::string line;
  size_t block = 0;
  while (std::getline(in, line)) {
    out << line << "\n";
    if (line.empty() || line[0] == '#') continue;
    while (line != "----" && std::getline(in, line)) out << line << "\n";
    while (std::getline(in, line) && !line.empty()) {
    }
    out << actual.at(block++) << "\n";
  }
  std::string text = out.str();
  while (text.size() >= 2 && text.back() == '\n' && text[text.size() - 2] == '\n') text.pop_back();
  std::ofstream(path) << text;
}

class Runner {
 public:
  explicit Runner(std::string* out) : out_(out), h_(out) {}

  void Run(const Command& c) {
    const std::string& n = c.name;
    if (n == "add-nodes") return AddNodes(c);
    if (n == "campaign") return h_.node(Id(c, 0)).peer->Campaign();
    if (n == "propose") return Propose(c);
    if (n == "propose-conf-change") return ProposeConfChange(c);
    if (n == "tick") return h_.Tick(Id(c, 0), c.args.size() > 1 ? std::stoi(c.args[1]) : 1);
    if (n == "tick-heartbeat")
      return h_.Tick(Id(c, 0), static_cast<int>(h_.node(Id(c, 0)).cfg.heartbeat_ticks));
    if (n == "tick-election") {
      return h_.Tick(Id(c, 0), static_cast<int>(2 * h_.node(Id(c, 0)).cfg.election_ticks - 1));
    }
    if (n == "process-ready") {
      for (size_t i = 0; i < c.args.size(); ++i) h_.ProcessUpdate(Id(c, i));
      return;
    }
    if (n == "deliver-msgs") return DeliverMsgs(c);
    if (n == "stabilize") return Stabilize(c);
    if (n == "cut") return h_.Cut(Id(c, 0), Id(c, 1));
    if (n == "partition") return Partition(c);
    if (n == "isolate") return h_.Isolate(Id(c, 0));
    if (n == "heal") return h_.Heal();
    if (n == "crash") return h_.Crash(Id(c, 0));
    if (n == "crash-during-update") return h_.CrashDuringUpdate(Id(c, 0));
    if (n == "restart") return h_.Restart(Id(c, 0));
    if (n == "compact") return h_.Compact(Id(c, 0), std::stoull(c.args.at(1)));
    if (n == "read-index") return ReadIndex(c);
    if (n == "transfer-leader") return h_.node(Id(c, 0)).peer->TransferLeader(Id(c, 1));
    if (n == "report-unreachable") return h_.node(Id(c, 0)).peer->ReportUnreachable(Id(c, 1));
    if (n == "report-snapshot") {
      return h_.node(Id(c, 0)).peer->ReportSnapshotStatus(Id(c, 1), c.args.size() > 2);
    }
    if (n == "status") return Status(c);
    if (n == "log") return Line(h_.LogLine(Id(c, 0)));
    if (n == "applied") return Applied(c);
    if (n == "progress") return ProgressOf(c);
    if (n == "reads") return Reads(c);
    if (n == "raft-state") return RaftState(c);
    Line("unknown command " + n);
  }

 private:
  ReplicaId Id(const Command& c, size_t i) { return std::stoull(c.args.at(i)); }
  void Line(const std::string& s) { out_->append(s).push_back('\n'); }

  void AddNodes(const Command& c) {
    const int count = std::stoi(c.args.at(0));
    ReplicaId first = 1;
    while (h_.Has(first)) ++first;
    std::vector<ReplicaId> ids;
    for (int i = 0; i < count; ++i) ids.push_back(first + static_cast<ReplicaId>(i));
    Config cfg;
    cfg.election_ticks = Opt(c, "election", 10);
    cfg.heartbeat_ticks = Opt(c, "heartbeat", 1);
    cfg.pre_vote = Opt(c, "pre-vote", 1) != 0;
    cfg.check_quorum = Opt(c, "check-quorum", 1) != 0;
    cfg.lease_read = Opt(c, "lease-read", 0) != 0;
    cfg.quiesce_after_election_timeouts = Opt(c, "quiesce", 0);
    cfg.max_inflight_msgs = Opt(c, "max-inflight", 256);
    cfg.max_inflight_bytes = Opt(c, "max-inflight-bytes", 0);
    cfg.max_msg_bytes = Opt(c, "max-msg-bytes", 1 << 20);
    cfg.max_uncommitted_bytes = Opt(c, "max-uncommitted", 64 << 20);
    cfg.max_unapplied_bytes = Opt(c, "max-unapplied", 0);
    cfg.gated_campaigns = Opt(c, "gated", 0) != 0;
    cfg.seed = Opt(c, "seed", 1);
    Membership m;
    if (Opt(c, "join", 0) == 0) {
      m.voters = c.options.count("voters") ? IdList(c.options.at("voters")) : ids;
      if (c.options.count("non-voting")) m.non_voting = IdList(c.options.at("non-voting"));
      if (c.options.count("witnesses")) {
        m.witnesses = IdList(c.options.at("witnesses"));
        for (ReplicaId w : m.witnesses) {
          if (!Contains(m.voters, w)) m.voters.push_back(w);
        }
        std::sort(m.voters.begin(), m.voters.end());
      }
    }
    for (ReplicaId id : ids) h_.AddNode(id, cfg, m);
    for (ReplicaId id : ids) Line(h_.StatusLine(id));
  }

  uint32_t Opt(const Command& c, const std::string& key, uint32_t def) {
    auto it = c.options.find(key);
    if (it == c.options.end()) return def;
    if (it->second == "true") return 1;
    if (it->second == "false") return 0;
    return static_cast<uint32_t>(std::stoul(it->second));
  }

  void Propose(const Command& c) {
    std::vector<Entry> ents;
    for (size_t i = 1; i < c.args.size(); ++i) {
      Entry e;
      e.cmd = c.args[i];
      ents.push_back(std::move(e));
    }
    const ProposeResult r = h_.node(Id(c, 0)).peer->Propose(&ents);
    if (r != ProposeResult::kOk) Line("propose: " + std::string(ProposeResultName(r)));
  }

  void ProposeConfChange(const Command& c) {
    ConfChange cc;
    auto t = c.options.find("transition");
    if (t != c.options.end()) {
      cc.transition = t->second == "explicit" ? ConfTransition::kJointExplicit
                      : t->second == "joint"  ? ConfTransition::kJointImplicit
                                              : ConfTransition::kAuto;
    }
    for (size_t i = 1; i < c.args.size(); ++i) {
      const std::string& a = c.args[i];
      ConfChangeItem item;
      item.replica = std::stoull(a.substr(1));
      switch (a[0]) {
        case 'v':
          item.type = ConfChangeType::kAddVoter;
          break;
        case 'l':
          item.type = ConfChangeType::kAddNonVoting;
          break;
        case 'w':
          item.type = ConfChangeType::kAddWitness;
          break;
        case 'r':
          item.type = ConfChangeType::kRemove;
          break;
        default:
          Line("bad change " + a);
          return;
      }
      cc.items.push_back(item);
    }
    const ProposeResult r = h_.node(Id(c, 0)).peer->ProposeConfChange(cc, 0);
    if (r != ProposeResult::kOk) Line("propose-conf-change: " + std::string(ProposeResultName(r)));
  }

  void DeliverMsgs(const Command& c) {
    if (c.options.count("drop")) {
      const ReplicaId to = std::stoull(c.options.at("drop"));
      auto& q = h_.queue();
      size_t dropped = 0;
      for (auto it = q.begin(); it != q.end();) {
        if (it->to == to) {
          Line("dropped: " + Harness::Describe(*it));
          it = q.erase(it);
          ++dropped;
        } else {
          ++it;
        }
      }
      if (dropped == 0) Line("ok");
      return;
    }
    if (c.args.empty()) {
      if (h_.Deliver(0) == 0) Line("ok");
      return;
    }
    for (size_t i = 0; i < c.args.size(); ++i) {
      if (h_.Deliver(Id(c, i)) == 0) Line("ok");
    }
  }

  // stabilize [ID...] [quiet=true]: quiet hides the trace (for set-up steps;
  // follow it with status or log to show the outcome).
  void Stabilize(const Command& c) {
    std::vector<ReplicaId> ids;
    for (size_t i = 0; i < c.args.size(); ++i) ids.push_back(Id(c, i));
    h_.set_verbose(Opt(c, "quiet", 0) == 0);
    h_.Stabilize(ids);
    h_.set_verbose(true);
  }

  // partition 1,2 3,4,5: every message between two different groups is lost,
  // in both directions, until heal.
  void Partition(const Command& c) {
    std::vector<std::vector<ReplicaId>> groups;
    for (const std::string& a : c.args) groups.push_back(IdList(a));
    for (size_t i = 0; i < groups.size(); ++i) {
      for (size_t j = 0; j < groups.size(); ++j) {
        if (i == j) continue;
        for (ReplicaId from : groups[i]) {
          for (ReplicaId to : groups[j]) h_.Cut(from, to);
        }
      }
    }
  }

  // reads ID: the reads that became ready on ID since it (re)started.
  void Reads(const Command& c) {
    Node& n = h_.node(Id(c, 0));
    std::string s = std::to_string(n.id) + ": reads=[";
    for (size_t i = 0; i < n.reads.size(); ++i) {
      s += (i ? " " : "") + std::to_string(n.reads[i].ctx) + "@" + std::to_string(n.reads[i].index);
    }
    Line(s + "] applied=" + std::to_string(n.sm.applied));
  }

  // raft-state ID: core state the status line leaves out.
  void RaftState(const Command& c) {
    const Raft& r = h_.node(Id(c, 0)).peer->raft();
    std::ostringstream o;
    o << r.id() << ": " << RoleName(r.role()) << " term=" << r.term()
      << " wants-campaign=" << (r.wants_campaign() ? "true" : "false")
      << " uncommitted-bytes=" << r.uncommitted_bytes()
      << " promotable=" << (r.Promotable() ? "true" : "false");
    // Only for a replica that applied its own removal: the driver stops it
    // once this is true (see Raft::removal_settled).
    if (Contains(r.membership().removed, r.id())) {
      o << " removal-settled=" << (r.removal_settled() ? "true" : "false");
    }
    Line(o.str());
  }

  void ReadIndex(const Command& c) {
    const ProposeResult r = h_.node(Id(c, 0)).peer->ReadIndex(std::stoull(c.args.at(1)));
    if (r != ProposeResult::kOk) Line("read-index: " + std::string(ProposeResultName(r)));
  }

  void Status(const Command& c) {
    if (c.args.empty()) {
      for (auto& [id, n] : h_.nodes()) Line(h_.StatusLine(id));
      return;
    }
    for (size_t i = 0; i < c.args.size(); ++i) Line(h_.StatusLine(Id(c, i)));
  }

  void Applied(const Command& c) {
    Node& n = h_.node(Id(c, 0));
    std::string s = std::to_string(n.id) + ": applied=" + std::to_string(n.sm.applied) + " [";
    for (size_t i = 0; i < n.sm.cmds.size(); ++i) s += (i ? " " : "") + n.sm.cmds[i];
    Line(s + "]");
  }

  void ProgressOf(const Command& c) {
    Node& n = h_.node(Id(c, 0));
    for (const auto& [id, pr] : n.peer->raft().tracker().progress()) {
      std::ostringstream o;
      o << id << ": " << ProgressStateName(pr.state) << " match=" << pr.match
        << " next=" << pr.next;
      if (pr.state == ProgressState::kReplicate) o << " inflight=" << pr.inflights.Count();
      if (pr.probe_sent) o << " paused";
      if (pr.pending_snapshot) o << " pending-snapshot=" << pr.pending_snapshot;
      if (pr.is_witness) o << " witness";
      Line(o.str());
    }
  }

  std::string* out_;
  Harness h_;
};

class ScenarioTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ScenarioTest, Run) {
  const std::string path = std::string(FLOTILLA_TESTDATA_DIR) + "/" + GetParam();
  const std::vector<Block> blocks = ReadBlocks(path);
  ASSERT_FALSE(blocks.empty()) << path << " has no commands";
  std::string out;
  Runner runner(&out);
  std::vector<std::string> actual;
  const char* rewrite = std::getenv("FLOTILLA_REWRITE");
  for (const Block& b : blocks) {
    out.clear();
    runner.Run(Parse(b.command));
    if (out.empty()) out = "ok\n";
    actual.push_back(out);
    if (rewrite == nullptr) {
      ASSERT_EQ(b.expected, out) << path << ":" << b.line << ": " << b.command;
    }
  }
  if (rewrite != nullptr) WriteBlocks(path, actual);
}

std::vector<std::string> ScenarioFiles() {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(FLOTILLA_TESTDATA_DIR)) {
    if (e.path().extension() == ".txt") files.push_back(e.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string TestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param.substr(0, info.param.size() - 4);
  for (char& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Raft, ScenarioTest, ::testing::ValuesIn(ScenarioFiles()), TestName);

}  // namespace
}  // namespace flotilla::raft::testing
