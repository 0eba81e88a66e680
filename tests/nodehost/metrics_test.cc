// The Prometheus text the daemon writes is valid, and its counters count.
#include "tools/nodehost/metrics.h"
#include "logdb/latency_recorder.h"

#include <gtest/gtest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>

#include "tests/nodehost/prom_text.h"
#include "tools/nodehost/process_metrics.h"

namespace flotilla::nodehost {
namespace {

TEST(Metrics, DaemonCountersRenderAsValidPrometheusText) {
  DaemonMetrics m;
  m.CountRequest(Method::kPut, 0, 0.002);
  m.CountRequest(Method::kPut, 0, 0.5);
  m.CountRequest(Method::kPut, 14, 20.0);  // beyond the last bucket
  m.CountRequest(Method::kTransferLeader, 16, 0.0001);
  MetricsListener l(&m);
  l.SnapshotSent(1, 2, true);
  PromWriter w;
  m.Render(&w);
  const testing::PromParse p = testing::ParsePrometheusText(w.text());
  ASSERT_TRUE(p.ok()) << p.error << "\n" << w.text();
  EXPECT_EQ(p.Sum("nodehost_client_requests_total", "method=\"Put\""), 3);
  EXPECT_EQ(p.samples.at("nodehost_client_requests_total{method=\"Put\",code=\"UNAVAILABLE\"}"), 1);
  EXPECT_EQ(
      p.samples.at(
          "nodehost_client_requests_total{method=\"TransferLeader\",code=\"UNAUTHENTICATED\"}"),
      1);
  EXPECT_EQ(p.samples.at("nodehost_client_request_duration_seconds_count{method=\"Put\"}"), 3);
  EXPECT_EQ(
      p.samples.at("nodehost_client_request_duration_seconds_bucket{method=\"Put\",le=\"+Inf\"}"),
      3);
  EXPECT_NEAR(p.samples.at("nodehost_client_request_duration_seconds_sum{method=\"Put\"}"), 20.502,
              1e-6);
  EXPECT_EQ(p.samples.at("nodehost_snapshots_send_failed_total"), 1);
  EXPECT_EQ(p.types.at("nodehost_client_request_duration_seconds"), "histogram");
}

TEST(Metrics, EngineMetricsRenderEveryFieldWithoutPerShardLabels) {
  NodeHostMetrics m;
  m.proposals = 10;
  m.saves = 4;
  m.saved_entries = 12;
  m.campaigns = 2;
  m.shards = 3;
  LatencyRecorder save;
  save.Observe(30);        // 25 < 30 <= 50 us
  save.Observe(20000000);  // beyond the last bound
  m.save_latency = save.Read();
  PromWriter w;
  RenderEngineMetrics(m, &w);
  const testing::PromParse p = testing::ParsePrometheusText(w.text());
  ASSERT_TRUE(p.ok()) << p.error << "\n" << w.text();
  EXPECT_EQ(p.samples.at("flotilla_proposals_total"), 10);
  EXPECT_EQ(p.samples.at("flotilla_campaigns_total"), 2);
  EXPECT_EQ(p.samples.at("flotilla_shards"), 3);
  EXPECT_EQ(p.samples.at("flotilla_logdb_entries_per_save"), 3);
  EXPECT_EQ(p.samples.at("flotilla_logdb_save_duration_seconds_bucket{le=\"2.5e-05\"}"), 0);
  EXPECT_EQ(p.samples.at("flotilla_logdb_save_duration_seconds_bucket{le=\"5e-05\"}"), 1);
  EXPECT_EQ(p.samples.at("flotilla_logdb_save_duration_seconds_bucket{le=\"+Inf\"}"), 2);
  EXPECT_EQ(p.samples.at("flotilla_logdb_save_duration_seconds_count"), 2);
  EXPECT_EQ(p.types.at("flotilla_logdb_fsync_duration_seconds"), "histogram");
  for (const auto& [series, value] : p.samples) {
    EXPECT_EQ(series.find("shard="), std::string::npos) << series;
  }
}

// The process_* metrics of Prometheus' client libraries, with values that
// match what the process can see of itself.
TEST(Metrics, ProcessMetricsDescribeThisProcess) {
  PromWriter w;
  RenderProcessMetrics(&w);
  const testing::PromParse p = testing::ParsePrometheusText(w.text());
  ASSERT_TRUE(p.ok()) << p.error << "\n" << w.text();
  EXPECT_EQ(p.types.at("process_cpu_seconds_total"), "counter");
  EXPECT_GE(p.samples.at("process_cpu_seconds_total"), 0);
  EXPECT_GT(p.samples.at("process_resident_memory_bytes"), 1 << 20);
  EXPECT_GE(p.samples.at("process_virtual_memory_bytes"),
            p.samples.at("process_resident_memory_bytes"));
  EXPECT_GE(p.samples.at("process_open_fds"), 3);  // stdin, stdout, stderr at least
  rlimit lim{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &lim), 0);
  EXPECT_EQ(p.samples.at("process_max_fds"), static_cast<double>(lim.rlim_cur));
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const double start = p.samples.at("process_start_time_seconds");
  EXPECT_LE(start, now + 1);
  EXPECT_GT(start, now - 24 * 3600) << "this test process started within the last day";
}

TEST(Metrics, LabelValuesAreEscaped) {
  PromWriter w;
  w.Family("x_total", "help with \\ and\nnewline", "counter");
  w.Sample("x_total", PromWriter::Label("v", "a\"b\\c\nd"), uint64_t{1});
  const testing::PromParse p = testing::ParsePrometheusText(w.text());
  ASSERT_TRUE(p.ok()) << p.error << "\n" << w.text();
  EXPECT_EQ(p.samples.size(), 1u);
}

TEST(Metrics, TheCheckerRejectsBrokenText) {
  EXPECT_FALSE(testing::ParsePrometheusText("x 1\n").ok());  // no TYPE
  EXPECT_FALSE(testing::ParsePrometheusText("# TYPE x counter\nx{a=b} 1\n").ok());
  EXPECT_FALSE(testing::ParsePrometheusText("# TYPE x counter\nx 1\nx 2\n").ok());
  EXPECT_FALSE(testing::ParsePrometheusText("# TYPE x counter\nx one\n").ok());
  EXPECT_FALSE(testing::ParsePrometheusText(
                   "# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_bucket{le=\"+Inf\"} 4\nh_sum 1\n"
                   "h_count 4\n")
                   .ok());
}

}  // namespace
}  // namespace flotilla::nodehost
