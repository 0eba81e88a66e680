// The observability kit (tools/nodehost/observability/): the daemon's
// /metrics passes `promtool check metrics`; every query of the Grafana
// dashboard and every alert rule is valid PromQL (promtool check rules) and
// names only metric families a running daemon exports. The alert rules' own
// unit tests run as ctest test observability_rules.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/nodehost/prom_text.h"
#include "tests/nodehost/test_cluster.h"

namespace flotilla::nodehost {
namespace {

using json = nlohmann::json;
using testing::Curl;
using testing::TestCluster;

const std::string kKit = std::string(FLOTILLA_SOURCE_DIR) + "/tools/nodehost/observability/";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// promtool from Debian's prometheus package (tools/install-deps.sh). Without
// it the test cannot run: skipped on a developer's machine, failed under CI.
bool HavePromtool() { return std::system("command -v promtool >/dev/null 2>&1") == 0; }

// Runs `command`; returns its exit status and puts its output in `out`.
int RunCommand(const std::string& command, std::string* out) {
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out->append(buf, n);
  const int rc = ::pclose(p);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// Every dashboard query, with Grafana's variables replaced by values that
// make them plain PromQL.
std::vector<std::string> DashboardQueries() {
  const json d = json::parse(ReadFile(kKit + "dashboard.json"));
  std::vector<std::string> out;
  std::vector<json> panels(d.at("panels").begin(), d.at("panels").end());
  for (size_t i = 0; i < panels.size(); ++i) {
    if (panels[i].contains("panels")) {
      for (const json& p : panels[i]["panels"]) panels.push_back(p);
    }
    if (!panels[i].contains("targets")) continue;
    for (const json& t : panels[i]["targets"]) {
      std::string e = t.at("expr").get<std::string>();
      e = std::regex_replace(e, std::regex(R"(\$__rate_interval)"), "1m");
      e = std::regex_replace(e, std::regex(R"(\$instance)"), ".*");
      out.push_back(e);
    }
  }
  return out;
}

// The expressions of alerts.yml.
std::vector<std::string> AlertExpressions() {
  std::vector<std::string> out;
  std::istringstream in(ReadFile(kKit + "alerts.yml"));
  const std::regex expr(R"(^\s*expr:\s*(.*)$)");
  std::smatch m;
  for (std::string line; std::getline(in, line);) {
    if (std::regex_match(line, m, expr)) out.push_back(m[1]);
  }
  return out;
}

// The metric families an expression names (flotilla_*, nodehost_*,
// process_*), a histogram's _bucket/_sum/_count series folded into it.
std::set<std::string> Families(const std::string& expr) {
  std::set<std::string> out;
  const std::regex name(R"(\b((flotilla|nodehost|process)_[a-zA-Z0-9_]+))");
  for (auto it = std::sregex_iterator(expr.begin(), expr.end(), name); it != std::sregex_iterator();
       ++it) {
    std::string n = (*it)[1];
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string s(suffix);
      if (n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0 &&
          n.find("duration_seconds") != std::string::npos) {
        n.resize(n.size() - s.size());
      }
    }
    out.insert(n);
  }
  return out;
}

TEST(Observability, TheKitMatchesWhatADaemonExports) {
  if (!HavePromtool()) {
    if (std::getenv("CI") != nullptr) FAIL() << "promtool is missing (Debian package prometheus)";
    GTEST_SKIP() << "promtool is missing (Debian package prometheus)";
  }
  TestCluster::Options o;
  o.nodes = 3;
  TestCluster cluster(o);
  ASSERT_TRUE(cluster.Start());
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(cluster.Cli({"put", "k" + std::to_string(i), "v"}).exit_code, 0);
  }
  const std::string text = Curl("http://" + cluster.metrics_address(1) + "/metrics");
  const testing::PromParse page = testing::ParsePrometheusText(text);
  ASSERT_TRUE(page.ok()) << page.error;

  // promtool's lint of the exposition (names, units, HELP, TYPE).
  const std::string page_file = cluster.dir() + "/metrics.txt";
  std::ofstream(page_file) << text;
  std::string out;
  EXPECT_EQ(RunCommand("promtool check metrics < " + page_file, &out), 0) << out;

  // Every query and rule: valid PromQL, checked by promtool as recording
  // rules, and about families the daemon exports.
  std::vector<std::string> exprs = DashboardQueries();
  ASSERT_GE(exprs.size(), 20u) << "the dashboard's panels";
  const std::vector<std::string> alerts = AlertExpressions();
  ASSERT_GE(alerts.size(), 8u) << "the alert rules";
  exprs.insert(exprs.end(), alerts.begin(), alerts.end());
  std::string rules = "groups:\n  - name: check\n    rules:\n";
  for (size_t i = 0; i < exprs.size(); ++i) {
    SCOPED_TRACE(exprs[i]);
    const std::set<std::string> families = Families(exprs[i]);
    EXPECT_FALSE(families.empty() && exprs[i].find("up{") == std::string::npos)
        << "names no daemon metric";
    for (const std::string& f : families) {
      EXPECT_TRUE(page.types.count(f) != 0) << f << " is not on the daemon's /metrics page";
    }
    rules += "      - record: check_" + std::to_string(i) + "\n        expr: '" +
             std::regex_replace(exprs[i], std::regex("'"), "''") + "'\n";
  }
  const std::string rules_file = cluster.dir() + "/queries.yml";
  std::ofstream(rules_file) << rules;
  out.clear();
  EXPECT_EQ(RunCommand("promtool check rules " + rules_file, &out), 0) << out;
}

// metrics_per_shard = true adds six series per hosted replica, labelled by
// shard; without it there are none (a daemon with thousands of shards would
// otherwise export tens of thousands of series).
TEST(Observability, PerShardSeriesOnlyWhenAskedFor) {
  for (const bool per_shard : {false, true}) {
    SCOPED_TRACE(per_shard);
    TestCluster::Options o;
    o.nodes = 3;
    o.shards = 4;
    if (per_shard) o.extra_top_level = "metrics_per_shard = true\n";
    TestCluster cluster(o);
    ASSERT_TRUE(cluster.Start());
    ASSERT_TRUE(cluster.WaitReady(std::chrono::seconds(30)));
    const testing::PromParse page =
        testing::ParsePrometheusText(Curl("http://" + cluster.metrics_address(1) + "/metrics"));
    ASSERT_TRUE(page.ok()) << page.error;
    EXPECT_EQ(page.types.count("nodehost_shard_applied_index"), per_shard ? 1u : 0u);
    if (!per_shard) continue;
    for (int shard = 1; shard <= 4; ++shard) {
      const std::string l = "{shard=\"" + std::to_string(shard) + "\"}";
      EXPECT_GT(page.samples.at("nodehost_shard_term" + l), 0);
      EXPECT_GE(page.samples.at("nodehost_shard_commit_index" + l),
                page.samples.at("nodehost_shard_applied_index" + l));
    }
    // Across the three daemons each shard has one leader (scraped again
    // while an election on a loaded machine moves one).
    double leaders = 0, led = 0;
    for (int attempt = 0; attempt < 50 && (leaders != 4 || led != 12); ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
      leaders = led = 0;
      for (int id = 1; id <= 3; ++id) {
        const testing::PromParse p = testing::ParsePrometheusText(
            Curl("http://" + cluster.metrics_address(id) + "/metrics"));
        leaders += p.Sum("nodehost_shard_is_leader");
        led += p.Sum("nodehost_shard_has_leader");
      }
    }
    EXPECT_EQ(leaders, 4);
    EXPECT_EQ(led, 12) << "every replica of every shard knows its leader";
  }
}

}  // namespace
}  // namespace flotilla::nodehost
