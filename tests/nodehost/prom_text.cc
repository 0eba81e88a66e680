#include "tests/nodehost/prom_text.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>
#include <vector>

namespace flotilla::nodehost::testing {
namespace {

bool ValidName(const std::string& n, bool allow_colon) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool ok = std::isalpha(static_cast<unsigned char>(c)) || c == '_' ||
                    (allow_colon && c == ':') ||
                    (i > 0 && std::isdigit(static_cast<unsigned char>(c)));
    if (!ok) return false;
  }
  return true;
}

// Parses `{a="x",b="y"}` starting at line[pos] == '{'; sets pos past '}'.
bool ParseLabels(const std::string& line, size_t* pos, std::map<std::string, std::string>* out,
                 std::string* error) {
  size_t i = *pos + 1;
  while (i < line.size() && line[i] != '}') {
    const size_t eq = line.find('=', i);
    if (eq == std::string::npos) return *error = "label without '='", false;
    const std::string name = line.substr(i, eq - i);
    if (!ValidName(name, false)) return *error = "bad label name '" + name + "'", false;
    if (eq + 1 >= line.size() || line[eq + 1] != '"') return *error = "unquoted label value", false;
    std::string value;
    size_t j = eq + 2;
    for (; j < line.size() && line[j] != '"'; ++j) {
      if (line[j] == '\\') {
        if (j + 1 >= line.size()) return *error = "dangling escape", false;
        const char e = line[++j];
        if (e != '\\' && e != '"' && e != 'n') return *error = "bad escape in label value", false;
        value.push_back(e == 'n' ? '\n' : e);
      } else {
        value.push_back(line[j]);
      }
    }
    if (j >= line.size()) return *error = "unterminated label value", false;
    if (!out->emplace(name, value).second) return *error = "label '" + name + "' twice", false;
    i = j + 1;
    if (i < line.size() && line[i] == ',') ++i;
  }
  if (i >= line.size()) return *error = "unterminated label set", false;
  *pos = i + 1;
  return true;
}

std::string FamilyOf(const std::string& name, const std::map<std::string, std::string>& types) {
  if (types.count(name)) return name;
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string s(suffix);
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
      const std::string base = name.substr(0, name.size() - s.size());
      if (types.count(base)) return base;
    }
  }
  return "";
}

bool ParseValue(const std::string& text, double* v) {
  if (text == "+Inf") return *v = INFINITY, true;
  if (text == "-Inf") return *v = -INFINITY, true;
  if (text == "NaN") return *v = NAN, true;
  char* end = nullptr;
  *v = std::strtod(text.c_str(), &end);
  return end != nullptr && *end == '\0' && !text.empty();
}

// Histogram buckets: per series (labels without le), le -> cumulative count.
using Buckets = std::map<std::string, std::vector<std::pair<double, double>>>;

std::string CheckHistograms(const Buckets& buckets, const std::map<std::string, double>& samples) {
  for (const auto& [series, bs] : buckets) {
    double prev = 0;
    double inf = -1;
    for (const auto& [le, count] : bs) {
      if (count < prev) return "histogram " + series + ": buckets are not cumulative";
      prev = count;
      if (std::isinf(le)) inf = count;
    }
    if (inf < 0) return "histogram " + series + ": no +Inf bucket";
    const size_t brace = series.find('{');
    const std::string count_key = series.substr(0, brace) + "_count" +
                                  (brace == std::string::npos ? "" : series.substr(brace));
    const auto it = samples.find(count_key);
    if (it == samples.end() || it->second != inf)
      return "histogram " + series + ": +Inf bucket differs from _count";
  }
  return "";
}

}  // namespace

double PromParse::Sum(const std::string& name, const std::string& label_filter) const {
  double sum = 0;
  for (const auto& [key, v] : samples) {
    const std::string n = key.substr(0, key.find('{'));
    if (n == name && (label_filter.empty() || key.find(label_filter) != std::string::npos))
      sum += v;
  }
  return sum;
}

PromParse ParsePrometheusText(const std::string& text) {
  PromParse p;
  std::istringstream in(text);
  std::string line;
  int line_no = 0;
  Buckets buckets;
  std::set<std::string> helped;
  auto fail = [&](const std::string& why) {
    p.error = "line " + std::to_string(line_no) + ": " + why + ": " + line;
    return p;
  };
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream ls(line);
      std::string hash, kind, name, rest;
      ls >> hash >> kind >> name;
      if (kind == "TYPE") {
        ls >> rest;
        static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary",
                                                     "untyped"};
        if (!ValidName(name, true) || kTypes.count(rest) == 0) return fail("bad TYPE line");
        if (!p.types.emplace(name, rest).second) return fail("TYPE twice");
      } else if (kind == "HELP") {
        if (!ValidName(name, true) || !helped.insert(name).second) return fail("bad HELP line");
      }
      continue;
    }
    size_t pos = 0;
    while (pos < line.size() && line[pos] != '{' && line[pos] != ' ') ++pos;
    const std::string name = line.substr(0, pos);
    if (!ValidName(name, true)) return fail("bad metric name");
    std::map<std::string, std::string> labels;
    if (pos < line.size() && line[pos] == '{' && !ParseLabels(line, &pos, &labels, &p.error))
      return fail(p.error);
    if (pos >= line.size() || line[pos] != ' ') return fail("no value");
    std::string value_text = line.substr(pos + 1);
    if (const size_t sp = value_text.find(' '); sp != std::string::npos)
      value_text = value_text.substr(0, sp);  // a timestamp follows
    double v = 0;
    if (!ParseValue(value_text, &v)) return fail("bad value");
    const std::string family = FamilyOf(name, p.types);
    if (family.empty()) return fail("sample before its TYPE");
    const std::string key = line.substr(0, pos);
    if (!p.samples.emplace(key, v).second) return fail("series twice");
    if (p.types[family] == "counter" && v < 0) return fail("negative counter");
    if (p.types[family] == "histogram" && name == family + "_bucket") {
      const auto le = labels.find("le");
      if (le == labels.end()) return fail("bucket without le");
      double bound = 0;
      if (!ParseValue(le->second, &bound)) return fail("bad le");
      std::string series = family;
      std::string rest;
      for (const auto& [k, val] : labels)
        if (k != "le") rest += (rest.empty() ? "" : ",") + k + "=\"" + val + "\"";
      buckets[rest.empty() ? series : series + "{" + rest + "}"].push_back({bound, v});
    }
  }
  // _count keys are stored as written; rebuild them in sorted-label form.
  std::map<std::string, double> counts;
  for (const auto& [key, v] : p.samples) {
    const size_t brace = key.find('{');
    const std::string n = key.substr(0, brace);
    if (n.size() < 6 || n.compare(n.size() - 6, 6, "_count") != 0) continue;
    std::map<std::string, std::string> labels;
    std::string err;
    size_t pos = brace;
    if (brace != std::string::npos) ParseLabels(key, &pos, &labels, &err);
    std::string rest;
    for (const auto& [k, val] : labels) rest += (rest.empty() ? "" : ",") + k + "=\"" + val + "\"";
    counts[rest.empty() ? n : n + "{" + rest + "}"] = v;
  }
  p.error = CheckHistograms(buckets, counts);
  return p;
}

}  // namespace flotilla::nodehost::testing
