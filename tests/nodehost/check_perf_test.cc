// `nodehost check perf`: it measures real fsyncs and answers PASS or FAIL
// with the reason. The bounds here are chosen so that the answer does not
// depend on this machine's speed (tests never assert on speed).
#include "tools/nodehost/check_perf.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "tools/nodehost/cli.h"

namespace flotilla::nodehost {
namespace {

int Check(const std::string& dir, const std::string& bound, std::string* out) {
  const char* argv[] = {"nodehost",   "check",     "perf", "--dir",
                        dir.c_str(),  "--seconds", "0.2",  "--max-fsync-p99-ms",
                        bound.c_str()};
  ::testing::internal::CaptureStdout();
  const int rc = RunCli(9, const_cast<char**>(argv));
  *out = ::testing::internal::GetCapturedStdout();
  return rc;
}

TEST(CheckPerf, MeasuresFsyncsAndLeavesNothingBehind) {
  const std::string dir = ::testing::TempDir() + "/check-perf-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  const FsyncReport r = MeasureFsync(dir, std::chrono::milliseconds(200));
  EXPECT_EQ(r.error, "");
  EXPECT_GT(r.syncs, 0u);
  EXPECT_LE(r.p50_ms, r.p99_ms);
  EXPECT_LE(r.p99_ms, r.max_ms);
  EXPECT_TRUE(std::filesystem::is_empty(dir)) << "the probe file is removed";
  std::filesystem::remove_all(dir);
}

TEST(CheckPerf, PassesUnderAGenerousBoundAndFailsWithTheReasonUnderAnImpossibleOne) {
  std::string out;
  EXPECT_EQ(Check(::testing::TempDir(), "600000", &out), kExitOk) << out;
  EXPECT_NE(out.find("\nPASS\n"), std::string::npos) << out;
  EXPECT_EQ(Check(::testing::TempDir(), "0", &out), kExitCheckFailed) << out;
  EXPECT_NE(out.find("FAIL: fsync p99"), std::string::npos) << out;
  EXPECT_NE(out.find("is above 0.00 ms"), std::string::npos) << out;
}

TEST(CheckPerf, ADirectoryItCannotWriteIsAnError) {
  const FsyncReport r = MeasureFsync("/nonexistent/dir", std::chrono::milliseconds(50));
  EXPECT_NE(r.error.find("cannot create a file in /nonexistent/dir"), std::string::npos) << r.error;
}

}  // namespace
}  // namespace flotilla::nodehost
