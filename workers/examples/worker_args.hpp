#pragma once

#include <string>
#include <vector>

namespace occasional::examples {

// The flags every example worker takes: `--listen ADDR` and
// `--defer-accept` (standalone mode only) plus its own `--name value` pairs.
struct WorkerArgs {
  std::string listen;
  bool defer_accept = false;
  std::vector<std::pair<std::string, std::string>> options;

  std::string get(const std::string& name, const std::string& fallback = "") const {
    for (const auto& [k, v] : options)
      if (k == name) return v;
    return fallback;
  }
  bool has(const std::string& name) const {
    for (const auto& [k, v] : options)
      if (k == name) return true;
    return false;
  }
};

inline WorkerArgs parse_worker_args(int argc, char** argv) {
  WorkerArgs a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--defer-accept") {
      a.defer_accept = true;
      continue;
    }
    std::string v = (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) ? argv[++i] : "";
    if (k == "--listen")
      a.listen = v;
    else
      a.options.emplace_back(k, v);
  }
  return a;
}

}  // namespace occasional::examples
