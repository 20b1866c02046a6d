#include "app/config_loader.hpp"

#include <simdjson.h>

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <variant>

namespace occasional::gateway {

namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

using Step = JsonStep;

// Finds where a value (given by its path) starts in the text, to report
// line:column. The text is valid JSON (simdjson said so), so this skipper
// can be small.
class Locator {
 public:
  explicit Locator(std::string_view text) : t_(text) {}

  // With `at_key`, where the last step's key starts rather than its value;
  // `skip_same` passes over that many earlier occurrences of the last key
  // (a duplicate key is reported where it is repeated).
  size_t find(const std::vector<Step>& path, bool at_key = false, int skip_same = 0) {
    pos_ = 0;
    ws();
    for (size_t depth = 0; depth < path.size(); ++depth) {
      const Step& step = path[depth];
      const bool last = depth + 1 == path.size();
      if (pos_ >= t_.size()) return pos_;
      if (const auto* key = std::get_if<std::string>(&step)) {
        if (t_[pos_] != '{') return pos_;
        ++pos_;
        bool found = false;
        int passed = 0;
        while (!found) {
          ws();
          if (pos_ >= t_.size() || t_[pos_] == '}') return pos_;
          const size_t key_at = pos_;
          std::string k = string();
          ws();
          ++pos_;  // ':'
          ws();
          if (k == *key && (!last || passed++ == skip_same)) {
            found = true;
            if (last && at_key) return key_at;
          } else {
            skip();
            ws();
            if (pos_ < t_.size() && t_[pos_] == ',') ++pos_;
          }
        }
      } else {
        size_t index = std::get<size_t>(step);
        if (t_[pos_] != '[') return pos_;
        ++pos_;
        ws();
        for (size_t i = 0; i < index; ++i) {
          skip();
          ws();
          if (pos_ < t_.size() && t_[pos_] == ',') ++pos_;
          ws();
        }
      }
    }
    return pos_;
  }

  // The position of the first syntax error (best effort), for simdjson's
  // errors, which carry no position.
  size_t first_error() {
    pos_ = 0;
    ws();
    if (!value_ok()) return pos_;
    ws();
    return pos_;
  }

 private:
  void ws() {
    while (pos_ < t_.size() &&
           (t_[pos_] == ' ' || t_[pos_] == '\n' || t_[pos_] == '\r' || t_[pos_] == '\t'))
      ++pos_;
  }
  std::string string() {
    std::string out;
    ++pos_;
    while (pos_ < t_.size() && t_[pos_] != '"') {
      if (t_[pos_] == '\\') ++pos_;
      if (pos_ < t_.size()) out.push_back(t_[pos_++]);
    }
    ++pos_;
    return out;
  }
  void skip() { value_ok(); }
  bool value_ok() {
    if (pos_ >= t_.size()) return false;
    char c = t_[pos_];
    if (c == '"') {
      ++pos_;
      while (pos_ < t_.size() && t_[pos_] != '"') {
        if (t_[pos_] == '\\') ++pos_;
        if (pos_ < t_.size() && static_cast<unsigned char>(t_[pos_]) < 0x20) return false;
        ++pos_;
      }
      if (pos_ >= t_.size()) return false;
      ++pos_;
      return true;
    }
    if (c == '{' || c == '[') {
      const char close = c == '{' ? '}' : ']';
      ++pos_;
      ws();
      if (pos_ < t_.size() && t_[pos_] == close) {
        ++pos_;
        return true;
      }
      for (;;) {
        ws();
        if (c == '{') {
          if (pos_ >= t_.size() || t_[pos_] != '"' || !value_ok()) return false;
          ws();
          if (pos_ >= t_.size() || t_[pos_] != ':') return false;
          ++pos_;
          ws();
        }
        if (!value_ok()) return false;
        ws();
        if (pos_ < t_.size() && t_[pos_] == ',') {
          ++pos_;
          continue;
        }
        if (pos_ < t_.size() && t_[pos_] == close) {
          ++pos_;
          return true;
        }
        return false;
      }
    }
    size_t start = pos_;
    while (pos_ < t_.size() &&
           std::string_view("{}[],: \t\r\n\"").find(t_[pos_]) == std::string_view::npos)
      ++pos_;
    std::string_view word = t_.substr(start, pos_ - start);
    if (word == "true" || word == "false" || word == "null") return true;
    double d;
    std::istringstream in{std::string(word)};
    if (word.empty() || !(in >> d)) {
      pos_ = start;
      return false;
    }
    return true;
  }

  std::string_view t_;
  size_t pos_ = 0;
};

std::string line_col(std::string_view text, size_t offset) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return std::to_string(line) + ":" + std::to_string(col);
}

// Error messages are one line: keys and values from the file may hold any
// character, so control characters are shown escaped.
std::string one_line(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += c;
    }
  }
  return out;
}

const char* type_name(element_type t) {
  switch (t) {
    case element_type::ARRAY:
      return "an array";
    case element_type::OBJECT:
      return "an object";
    case element_type::INT64:
    case element_type::UINT64:
      return "an integer";
    case element_type::DOUBLE:
      return "a number";
    case element_type::STRING:
      return "a string";
    case element_type::BOOL:
      return "true/false";
    case element_type::NULL_VALUE:
      return "null";
  }
  return "?";
}

class Loader {
 public:
  Loader(std::string_view text, std::string origin, const AdminSettings* admin_override)
      : text_(text), origin_(std::move(origin)), admin_override_(admin_override) {}

  // `at_key`, `skip_same`: as Locator::find, for errors about a key itself.
  [[noreturn]] void fail(const std::vector<Step>& path, const std::string& message,
                         bool at_key = false, int skip_same = 0) {
    Locator loc(text_);
    std::string p = "$";
    for (const Step& s : path) {
      if (const auto* k = std::get_if<std::string>(&s))
        p += "." + *k;
      else
        p += "[" + std::to_string(std::get<size_t>(s)) + "]";
    }
    throw ConfigError(one_line(origin_ + ":" + line_col(text_, loc.find(path, at_key, skip_same)) +
                               ": " + p + ": " + message));
  }

  // simdjson keeps every copy of a repeated key and a lookup finds the first,
  // so `"replicas": 2, "replicas": 3` would quietly mean 2.
  void no_duplicate_keys(object o, const std::vector<Step>& path) {
    std::set<std::string_view> seen;
    for (auto [key, value] : o) {
      if (seen.insert(key).second) continue;
      auto p = path;
      p.emplace_back(std::string(key));
      // The first repeat fails: point past the key's first occurrence.
      fail(p, "duplicate key '" + std::string(key) + "' (each key may appear once)", true, 1);
    }
  }

  object obj(element e, const std::vector<Step>& path, std::initializer_list<const char*> allowed) {
    object o;
    if (e.get(o) != simdjson::SUCCESS)
      fail(path, std::string("expected an object, found ") + type_name(e.type()));
    no_duplicate_keys(o, path);
    for (auto [key, value] : o) {
      bool ok = false;
      for (const char* a : allowed) ok = ok || key == a;
      if (!ok) {
        std::string list;
        for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
        auto p = path;
        p.emplace_back(std::string(key));
        fail(p, "unknown key '" + std::string(key) + "' (expected one of: " + list + ")", true);
      }
    }
    return o;
  }

  std::string str(element e, const std::vector<Step>& path) {
    std::string_view v;
    if (e.get(v) != simdjson::SUCCESS)
      fail(path, std::string("expected a string, found ") + type_name(e.type()));
    return std::string(v);
  }

  bool boolean(element e, const std::vector<Step>& path) {
    bool v = false;
    if (e.get(v) != simdjson::SUCCESS)
      fail(path, std::string("expected true or false, found ") + type_name(e.type()));
    return v;
  }

  int64_t integer(element e, const std::vector<Step>& path, int64_t min, int64_t max) {
    int64_t v;
    if (e.get(v) != simdjson::SUCCESS)
      fail(path, std::string("expected an integer, found ") + type_name(e.type()));
    if (v < min || v > max)
      fail(path, "expected an integer from " + std::to_string(min) + " to " + std::to_string(max) +
                     ", found " + std::to_string(v));
    return v;
  }

  double number(element e, const std::vector<Step>& path, double min, double max) {
    double v;
    if (e.get(v) != simdjson::SUCCESS)
      fail(path, std::string("expected a number, found ") + type_name(e.type()));
    if (!(v >= min && v <= max)) {
      std::ostringstream m;
      m << "expected a number from " << min << " to " << max << ", found " << v;
      fail(path, m.str());
    }
    return v;
  }

  supervisor::Duration seconds(element e, const std::vector<Step>& path) {
    double v = number(e, path, 0, 86400 * 365);
    return std::chrono::duration_cast<supervisor::Duration>(std::chrono::duration<double>(v));
  }

  std::string one_of(element e, const std::vector<Step>& path,
                     std::initializer_list<const char*> choices) {
    std::string v = str(e, path);
    std::string list;
    for (const char* c : choices) {
      if (v == c) return v;
      list += (list.empty() ? "'" : ", '") + std::string(c) + "'";
    }
    fail(path, "expected one of " + list + ", found '" + v + "'");
  }

  Config load() {
    simdjson::dom::parser parser;
    element root;
    simdjson::padded_string padded(text_);
    if (auto err = parser.parse(padded).get(root)) {
      Locator loc(text_);
      throw ConfigError(origin_ + ":" + line_col(text_, loc.first_error()) +
                        ": not valid JSON: " + simdjson::error_message(err));
    }
    Config config;
    object top = obj(root, {}, {"listeners", "services", "admin", "log_format"});
    element e;
    if (top["services"].get(e) != simdjson::SUCCESS) fail({}, "missing key 'services'");
    services(e, config);
    if (top["listeners"].get(e) == simdjson::SUCCESS) listeners(e, config);
    if (top["log_format"].get(e) == simdjson::SUCCESS)
      config.log_format = one_of(e, {"log_format"}, {"json", "text"}) == "json"
                              ? supervisor::LogFormat::json
                              : supervisor::LogFormat::text;
    if (top["admin"].get(e) == simdjson::SUCCESS) admin(e, config.admin);
    if (admin_override_) {
      config.admin.enabled = admin_override_->enabled;
      config.admin.address = admin_override_->address;
    }
    try {
      validate(config);
    } catch (const ConfigError& err) {
      if (!err.path.empty()) fail(err.path, err.what());
      throw ConfigError(one_line(origin_ + ": " + err.what()));
    }
    return config;
  }

 private:
  void admin(element e, AdminSettings& admin) {
    object o = obj(e, {"admin"}, {"address", "token", "token_file", "insecure"});
    element v;
    if (o["address"].get(v) == simdjson::SUCCESS) {
      const std::string text = str(v, {"admin", "address"});
      if (text == "off") {
        admin.enabled = false;
      } else {
        try {
          admin.address = parse_listen_address(text);
        } catch (const std::invalid_argument& err) {
          fail({"admin", "address"}, std::string(err.what()) + ", or \"off\"");
        }
      }
    }
    if (o["insecure"].get(v) == simdjson::SUCCESS)
      admin.insecure = boolean(v, {"admin", "insecure"});
    const bool has_token = o["token"].get(v) == simdjson::SUCCESS;
    if (has_token) {
      admin.token = str(v, {"admin", "token"});
      if (admin.token.empty()) fail({"admin", "token"}, "must not be empty (omit it for no token)");
    }
    if (o["token_file"].get(v) == simdjson::SUCCESS) {
      if (has_token) fail({"admin", "token_file"}, "give token or token_file, not both");
      try {
        admin.token = read_token_file(str(v, {"admin", "token_file"}));
      } catch (const ConfigError& err) {
        fail({"admin", "token_file"}, err.what());
      }
    }
  }

  void services(element e, Config& config) {
    object all;
    if (e.get(all) != simdjson::SUCCESS)
      fail({"services"},
           std::string("expected an object of services by name, found ") + type_name(e.type()));
    if (all.size() == 0) fail({"services"}, "no services: define at least one");
    no_duplicate_keys(all, {"services"});
    for (auto [name, value] : all) {
      std::vector<Step> path{"services", std::string(name)};
      ServiceEntry entry;
      supervisor::ServiceConfig& s = entry.service;
      s.name = std::string(name);
      // Beyond 20 items clang-format would put one per line.
      // clang-format off
      object o =
          obj(value, path,
              {"command", "env", "cwd", "mode", "replicas", "restart", "backoff_initial",
               "backoff_max", "jitter", "stable_after", "max_restarts", "window", "cooloff",
               "grace", "max_connections", "burst", "max_processes", "queue", "listener",
               "watchdog", "readiness", "process"});
      // clang-format on
      auto at = [&](const char* key) {
        auto p = path;
        p.emplace_back(std::string(key));
        return p;
      };
      element v;
      if (o["command"].get(v) != simdjson::SUCCESS) fail(path, "missing key 'command'");
      array cmd;
      if (v.get(cmd) != simdjson::SUCCESS || cmd.size() == 0)
        fail(at("command"), "expected a non-empty array of strings (program and arguments)");
      size_t i = 0;
      for (element arg : cmd) {
        auto p = at("command");
        p.emplace_back(i++);
        s.process.argv.push_back(str(arg, p));
      }
      if (o["env"].get(v) == simdjson::SUCCESS) {
        object env;
        if (v.get(env) != simdjson::SUCCESS) fail(at("env"), "expected an object of strings");
        no_duplicate_keys(env, at("env"));
        for (auto [k, val] : env) {
          auto p = at("env");
          p.emplace_back(std::string(k));
          if (k.empty() || k.find('=') != std::string_view::npos)
            fail(p, "environment variable names must be non-empty and contain no '='");
          s.process.env.push_back(std::string(k) + "=" + str(val, p));
        }
      }
      if (o["cwd"].get(v) == simdjson::SUCCESS) s.process.cwd = str(v, at("cwd"));
      if (o["mode"].get(v) == simdjson::SUCCESS) {
        s.mode = *workers::parse_service_mode(
            one_of(v, at("mode"), {"handoff", "listen_fds", "inetd", "plain"}));
      } else {
        s.mode = workers::WorkerMode::handoff;
      }
      if (o["replicas"].get(v) == simdjson::SUCCESS)
        s.replicas = static_cast<int>(integer(v, at("replicas"), 1, 4096));
      if (o["restart"].get(v) == simdjson::SUCCESS) {
        s.restart.mode = *supervisor::parse_restart_mode(
            one_of(v, at("restart"), {"always", "on-failure", "never"}));
      }
      if (o["backoff_initial"].get(v) == simdjson::SUCCESS)
        s.restart.backoff_initial = seconds(v, at("backoff_initial"));
      if (o["backoff_max"].get(v) == simdjson::SUCCESS)
        s.restart.backoff_max = seconds(v, at("backoff_max"));
      if (s.restart.backoff_max < s.restart.backoff_initial)
        fail(at("backoff_max"), "must be at least backoff_initial");
      if (o["jitter"].get(v) == simdjson::SUCCESS) s.restart.jitter = number(v, at("jitter"), 0, 1);
      if (o["stable_after"].get(v) == simdjson::SUCCESS)
        s.restart.stable_after = seconds(v, at("stable_after"));
      if (o["max_restarts"].get(v) == simdjson::SUCCESS)
        s.restart.max_restarts = static_cast<int>(integer(v, at("max_restarts"), 0, 1'000'000));
      if (o["window"].get(v) == simdjson::SUCCESS) s.restart.window = seconds(v, at("window"));
      if (o["cooloff"].get(v) == simdjson::SUCCESS) s.restart.cooloff = seconds(v, at("cooloff"));
      if (o["grace"].get(v) == simdjson::SUCCESS) s.grace = seconds(v, at("grace"));
      if (o["watchdog"].get(v) == simdjson::SUCCESS) s.watchdog = seconds(v, at("watchdog"));
      if (o["max_connections"].get(v) == simdjson::SUCCESS)
        entry.balancer.max_connections =
            static_cast<uint32_t>(integer(v, at("max_connections"), 0, 10'000'000));
      if (o["burst"].get(v) == simdjson::SUCCESS)
        entry.balancer.burst =
            *parse_burst_mode(one_of(v, at("burst"), {"auto", "spread", "runs"}));
      if (o["max_processes"].get(v) == simdjson::SUCCESS)
        entry.max_processes = static_cast<int>(integer(v, at("max_processes"), 1, 100'000));
      if (o["queue"].get(v) == simdjson::SUCCESS) {
        object q = obj(v, at("queue"), {"max", "timeout"});
        element qv;
        auto qat = [&](const char* key) {
          auto p = at("queue");
          p.emplace_back(std::string(key));
          return p;
        };
        if (q["max"].get(qv) == simdjson::SUCCESS)
          entry.balancer.queue_max = static_cast<size_t>(integer(qv, qat("max"), 0, 10'000'000));
        if (q["timeout"].get(qv) == simdjson::SUCCESS)
          entry.balancer.queue_timeout =
              std::chrono::duration_cast<std::chrono::milliseconds>(seconds(qv, qat("timeout")));
      }
      if (o["listener"].get(v) == simdjson::SUCCESS) entry.listener = str(v, at("listener"));
      if (o["readiness"].get(v) == simdjson::SUCCESS) {
        const std::string r = one_of(v, at("readiness"), {"notify", "started", "accepting"});
        if (s.mode != workers::WorkerMode::listen_fds)
          fail(at("readiness"),
               "applies to listen_fds services only (a handoff worker says "
               "`ready`; a plain one is ready once it runs)");
        s.readiness = *supervisor::parse_readiness(r);
      }
      if (o["process"].get(v) == simdjson::SUCCESS) {
        if (s.mode == workers::WorkerMode::inetd)
          fail(at("process"),
               "inetd processes (one per connection) are never processes of the "
               "system: drop \"process\"");
        s.process_channel = boolean(v, at("process"));
      }
      if (s.mode == workers::WorkerMode::listen_fds && entry.listener.empty())
        fail(path, "mode listen_fds needs \"listener\": the name of the listener to share");
      config.services.push_back(std::move(entry));
    }
  }

  void listeners(element e, Config& config) {
    array list;
    if (e.get(list) != simdjson::SUCCESS)
      fail({"listeners"}, std::string("expected an array, found ") + type_name(e.type()));
    size_t i = 0;
    for (element item : list) {
      std::vector<Step> path{"listeners", i++};
      auto at = [&](const char* key) {
        auto p = path;
        p.emplace_back(std::string(key));
        return p;
      };
      object o = obj(item, path, {"name", "address", "routes", "peek", "defer_accept"});
      ListenerConfig l;
      element v;
      if (o["address"].get(v) != simdjson::SUCCESS) fail(path, "missing key 'address'");
      try {
        l.address = parse_listen_address(str(v, at("address")));
      } catch (const std::invalid_argument& err) {
        fail(at("address"), err.what());
      }
      l.name = o["name"].get(v) == simdjson::SUCCESS ? str(v, at("name")) : l.address.text;
      if (o["defer_accept"].get(v) == simdjson::SUCCESS)
        l.defer_accept = boolean(v, at("defer_accept"));
      if (o["peek"].get(v) == simdjson::SUCCESS) {
        object p = obj(v, at("peek"), {"max_bytes", "timeout"});
        element pv;
        auto pat = [&](const char* key) {
          auto x = at("peek");
          x.emplace_back(std::string(key));
          return x;
        };
        if (p["max_bytes"].get(pv) == simdjson::SUCCESS)
          l.peek.max_bytes = static_cast<size_t>(integer(pv, pat("max_bytes"), 16, 65536));
        if (p["timeout"].get(pv) == simdjson::SUCCESS)
          l.peek.timeout =
              std::chrono::duration_cast<std::chrono::milliseconds>(seconds(pv, pat("timeout")));
      }
      if (o["routes"].get(v) == simdjson::SUCCESS) {
        array routes;
        if (v.get(routes) != simdjson::SUCCESS)
          fail(at("routes"), std::string("expected an array, found ") + type_name(v.type()));
        size_t k = 0;
        for (element r : routes) {
          auto rp = at("routes");
          rp.emplace_back(k++);
          auto rat = [&](const char* key) {
            auto x = rp;
            x.emplace_back(std::string(key));
            return x;
          };
          object ro =
              obj(r, rp, {"kind", "service", "preface", "host", "path_prefix", "server_name"});
          Route route;
          element rv;
          if (ro["service"].get(rv) != simdjson::SUCCESS) fail(rp, "missing key 'service'");
          route.service = str(rv, rat("service"));
          std::string kind = "default";
          if (ro["kind"].get(rv) == simdjson::SUCCESS)
            kind = one_of(rv, rat("kind"), {"default", "preface", "http", "tls_sni"});
          auto only = [&](std::initializer_list<const char*> keys) {
            for (const char* key : {"preface", "host", "path_prefix", "server_name"}) {
              bool allowed = false;
              for (const char* a : keys) allowed = allowed || std::string_view(a) == key;
              element x;
              if (!allowed && ro[key].get(x) == simdjson::SUCCESS)
                fail(rat(key),
                     "'" + std::string(key) + "' does not apply to a route of kind '" + kind + "'");
            }
          };
          if (kind == "default") {
            route.kind = RouteKind::default_route;
            only({});
          } else if (kind == "preface") {
            route.kind = RouteKind::preface;
            only({"preface"});
            route.preface = ro["preface"].get(rv) == simdjson::SUCCESS ? str(rv, rat("preface"))
                                                                       : route.service;
            Preface check = parse_preface(route.preface + "\n");
            if (check.status != PeekStatus::complete)
              fail(rat("preface"), "a preface is 1-64 characters of A-Z a-z 0-9 . _ -");
          } else if (kind == "http") {
            route.kind = RouteKind::http;
            only({"host", "path_prefix"});
            if (ro["host"].get(rv) == simdjson::SUCCESS) {
              for (char c : str(rv, rat("host")))
                route.host.push_back(
                    static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
            }
            if (ro["path_prefix"].get(rv) == simdjson::SUCCESS) {
              route.path_prefix = str(rv, rat("path_prefix"));
              if (!route.path_prefix.starts_with("/"))
                fail(rat("path_prefix"), "a path prefix starts with '/'");
            }
          } else {
            route.kind = RouteKind::tls_sni;
            only({"server_name"});
            if (ro["server_name"].get(rv) != simdjson::SUCCESS)
              fail(rp, "a tls_sni route needs 'server_name'");
            for (char c : str(rv, rat("server_name")))
              route.server_name.push_back(
                  static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
          }
          l.routes.push_back(std::move(route));
        }
      }
      config.listeners.push_back(std::move(l));
    }
  }

  std::string_view text_;
  std::string origin_;
  const AdminSettings* admin_override_;
};

}  // namespace

Config parse_config(std::string_view json, const std::string& origin, const AdminSettings* admin) {
  return Loader(json, origin, admin).load();
}

Config load_config_file(const std::string& path, const AdminSettings* admin) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw ConfigError(path + ": cannot open the configuration file: " + std::strerror(errno));
  std::stringstream buf;
  buf << in.rdbuf();
  return parse_config(buf.str(), path, admin);
}

}  // namespace occasional::gateway
