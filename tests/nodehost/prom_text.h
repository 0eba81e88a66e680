// A strict reader of the Prometheus text exposition format (0.0.4) for the
// tests: it checks what a scraper relies on and returns the samples.
#pragma once

#include <map>
#include <string>

namespace flotilla::nodehost::testing {

struct PromParse {
  std::string error;  // empty when valid
  // "name{labels}" (labels as written) -> value.
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;  // family -> counter|gauge|histogram|...
  bool ok() const { return error.empty(); }
  // The sum of every sample of `name` whose labels contain `label_filter`
  // (e.g. `method="Put"`; empty: all).
  double Sum(const std::string& name, const std::string& label_filter = "") const;
};

// Checks: every line is a HELP/TYPE comment, a sample or empty; names and
// label names are valid; label values are quoted with valid escapes; each
// sample belongs to a family whose TYPE came first; no series twice;
// counters are non-negative; histogram buckets are cumulative and their
// +Inf bucket equals _count.
PromParse ParsePrometheusText(const std::string& text);

}  // namespace flotilla::nodehost::testing
