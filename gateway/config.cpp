#include "gateway/config.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>

namespace occasional::gateway {

std::string read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("token file " + path + ": cannot read it: " + std::strerror(errno));
  std::string token;
  std::getline(in, token);
  if (!token.empty() && token.back() == '\r') token.pop_back();
  if (token.empty()) throw ConfigError("token file " + path + ": the first line is empty");
  return token;
}

void validate(const Config& config) {
  std::set<std::string> services, listeners;
  for (const auto& s : config.services)
    if (!services.insert(s.service.name).second)
      throw ConfigError("service '" + s.service.name + "' is defined twice",
                        {"services", s.service.name});
  for (size_t li = 0; li < config.listeners.size(); ++li) {
    const auto& l = config.listeners[li];
    if (!listeners.insert(l.name).second)
      throw ConfigError("listener '" + l.name + "' is defined twice", {"listeners", li});
    bool shared = false;
    for (const auto& s : config.services)
      shared =
          shared || (s.service.mode == supervisor::WorkerMode::listen_fds && s.listener == l.name);
    if (shared && !l.routes.empty())
      throw ConfigError("listener '" + l.name + "' is shared with a listen_fds service, which " +
                            "accepts on it itself: it can have no routes",
                        {"listeners", li, "routes"});
    if (!shared && l.routes.empty())
      throw ConfigError("listener '" + l.name + "' has no routes: add at least a default route",
                        {"listeners", li});
    for (size_t ri = 0; ri < l.routes.size(); ++ri) {
      const auto& r = l.routes[ri];
      const std::vector<JsonStep> at{"listeners", li, "routes", ri, "service"};
      if (!services.contains(r.service))
        throw ConfigError("listener '" + l.name + "': route to unknown service '" + r.service + "'",
                          at);
      for (const auto& s : config.services)
        if (s.service.name == r.service && s.service.mode != supervisor::WorkerMode::handoff &&
            s.service.mode != supervisor::WorkerMode::inetd)
          throw ConfigError("listener '" + l.name + "': route to service '" + r.service +
                                "', whose mode is " + supervisor::worker_mode_name(s.service.mode) +
                                "; only handoff and inetd services take routed connections",
                            at);
    }
    try {
      RouteTable table(l.routes);
    } catch (const std::invalid_argument& e) {
      throw ConfigError("listener '" + l.name + "': " + e.what(), {"listeners", li, "routes"});
    }
  }
  for (const auto& s : config.services)
    if (s.service.mode == supervisor::WorkerMode::listen_fds && !listeners.contains(s.listener))
      throw ConfigError("service '" + s.service.name + "' (mode listen_fds) needs \"listener\" " +
                            "to name one of the listeners",
                        {"services", s.service.name, "listener"});
}

}  // namespace occasional::gateway
