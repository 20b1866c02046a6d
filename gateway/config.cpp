#include "gateway/config.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

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

namespace {

// Whether two listening sockets cannot both be bound: the same port and
// family (IPv6 listeners are IPV6_V6ONLY, so they never take IPv4's), on the
// same address or a wildcard on either side (Linux refuses 127.0.0.1:P
// beside 0.0.0.0:P even with SO_REUSEADDR). Port 0 takes a free port.
bool addresses_clash(const ListenAddress& a, const ListenAddress& b) {
  if (a.port == 0 || a.port != b.port || a.v6 != b.v6) return false;
  const int family = a.v6 ? AF_INET6 : AF_INET;
  unsigned char x[sizeof(in6_addr)] = {}, y[sizeof(in6_addr)] = {};
  if (::inet_pton(family, a.host.c_str(), x) != 1 || ::inet_pton(family, b.host.c_str(), y) != 1)
    return a.host == b.host;
  const size_t n = a.v6 ? sizeof(in6_addr) : sizeof(in_addr);
  const unsigned char zero[sizeof(in6_addr)] = {};
  return std::memcmp(x, y, n) == 0 || std::memcmp(x, zero, n) == 0 || std::memcmp(y, zero, n) == 0;
}

void check_addresses(const Config& config) {
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    const auto& l = config.listeners[i];
    for (size_t j = 0; j < i; ++j) {
      const auto& other = config.listeners[j];
      if (addresses_clash(l.address, other.address))
        throw ConfigError("listener '" + l.name + "' (" + l.address.text + ") and listener '" +
                              other.name + "' (" + other.address.text +
                              ") cannot both listen: the same port on the same address, or on " +
                              "a wildcard address beside it",
                          {"listeners", i, "address"});
    }
    if (config.admin.enabled && addresses_clash(l.address, config.admin.address))
      throw ConfigError("listener '" + l.name + "' (" + l.address.text +
                            ") and the admin endpoint (" + config.admin.address.text +
                            ") cannot both listen: the same port on the same address, or on " +
                            "a wildcard address beside it",
                        {"listeners", i, "address"});
  }
}

}  // namespace

void validate(const Config& config) {
  check_addresses(config);
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
          shared || (s.service.mode == workers::WorkerMode::listen_fds && s.listener == l.name);
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
        if (s.service.name == r.service && s.service.mode != workers::WorkerMode::handoff &&
            s.service.mode != workers::WorkerMode::inetd)
          throw ConfigError("listener '" + l.name + "': route to service '" + r.service +
                                "', whose mode is " + workers::worker_mode_name(s.service.mode) +
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
    if (s.service.mode == workers::WorkerMode::listen_fds && !listeners.contains(s.listener))
      throw ConfigError("service '" + s.service.name + "' (mode listen_fds) needs \"listener\" " +
                            "to name one of the listeners",
                        {"services", s.service.name, "listener"});
}

}  // namespace occasional::gateway
