#include "app/config_loader.hpp"

#include <gtest/gtest.h>

namespace occasional::gateway {
namespace {

std::string error_of(const std::string& json) {
  try {
    parse_config(json, "c.json");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(ConfigLoaderTest, ValidConfigLoads) {
  Config c = parse_config(R"({"listeners":[{"address":"127.0.0.1:0","routes":[{"service":"w"}]}],
                              "services":{"w":{"command":["w"],"replicas":2,"grace":1.5}}})",
                          "c.json");
  ASSERT_EQ(c.services.size(), 1u);
  EXPECT_EQ(c.services[0].service.replicas, 2);
  EXPECT_EQ(c.listeners[0].routes[0].service, "w");
  EXPECT_FALSE(c.listeners[0].defer_accept);
  Config deferred = parse_config(
      R"({"listeners":[{"address":":0","defer_accept":true,"routes":[{"service":"w"}]}],
          "services":{"w":{"command":["w"]}}})",
      "c.json");
  EXPECT_TRUE(deferred.listeners[0].defer_accept);
  EXPECT_EQ(c.services[0].balancer.burst, BurstMode::automatic);
  for (auto [text, mode] :
       {std::pair{"auto", BurstMode::automatic}, std::pair{"spread", BurstMode::spread},
        std::pair{"runs", BurstMode::runs}}) {
    Config b = parse_config(
        std::string(R"({"services":{"w":{"command":["w"],"burst":")") + text + "\"}}}", "c.json");
    EXPECT_EQ(b.services[0].balancer.burst, mode) << text;
  }
}

TEST(ConfigLoaderTest, ErrorsNameFileLineColumnAndPath) {
  EXPECT_EQ(
      error_of("{\n  \"services\": {\"w\": {\"command\": [\"w\"], \"replica\": 2}}}"),
      "c.json:2:40: $.services.w.replica: unknown key 'replica' (expected one of: command, "
      "env, cwd, mode, replicas, restart, backoff_initial, backoff_max, jitter, stable_after, "
      "max_restarts, window, cooloff, grace, max_connections, burst, max_processes, queue, "
      "listener, watchdog, readiness, process)");
  EXPECT_EQ(error_of(R"({"services": {"w": {"command": ["w"], "replicas": "2"}}})"),
            "c.json:1:51: $.services.w.replicas: expected an integer, found a string");
  EXPECT_EQ(error_of(R"({"services": {"w": {"command": []}}})"),
            "c.json:1:32: $.services.w.command: expected a non-empty array of strings (program and "
            "arguments)");
  EXPECT_EQ(error_of(R"({"services": {}})"),
            "c.json:1:14: $.services: no services: define at least one");
  EXPECT_EQ(error_of("{\"services\": "),
            "c.json:1:14: not valid JSON: The JSON document has an improper structure: missing or "
            "superfluous commas, braces, missing keys, etc.");
  EXPECT_EQ(
      error_of(
          R"({"services":{"w":{"command":["w"]}},"listeners":[{"address":"1.2.3.4","routes":[]}]})"),
      "c.json:1:61: $.listeners[0].address: listen address '1.2.3.4' has no port: write it "
      "as 127.0.0.1:8080, [::1]:8080 or :8080");
  EXPECT_EQ(
      error_of(
          R"({"services":{"w":{"command":["w"]}},"listeners":[{"address":":1","routes":[{"service":"x"}]}]})"),
      "c.json:1:87: $.listeners[0].routes[0].service: listener ':1': route to unknown service 'x'");
}

}  // namespace
}  // namespace occasional::gateway

namespace occasional::gateway {
namespace {

TEST(ConfigLoaderTest, ErrorIsOneLineEvenWhenAKeyHoldsANewline) {
  // Found by the fuzzer: the key is echoed in the message.
  const std::string e = error_of(R"({"list\ners": []})");
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  EXPECT_NE(e.find("list\\ners"), std::string::npos) << e;
}

}  // namespace
}  // namespace occasional::gateway

namespace occasional::gateway {
namespace {

// Issue 21: simdjson keeps both copies of a repeated key and a lookup finds
// the first, so `"replicas": 2, "replicas": 3` ran 2 replicas without a word.
TEST(ConfigLoaderTest, ARepeatedKeyIsAnErrorAtItsSecondOccurrence) {
  EXPECT_EQ(error_of(R"({"services": {"w": {"command": ["w"], "replicas": 2, "replicas": 3}}})"),
            "c.json:1:54: $.services.w.replicas: duplicate key 'replicas' (each key may appear "
            "once)");
  EXPECT_EQ(error_of(R"({"services": {"w": {"command": ["w"]}}, "services": {}})"),
            "c.json:1:41: $.services: duplicate key 'services' (each key may appear once)");
  // The same key in different objects is no repeat.
  EXPECT_EQ(error_of(R"({"services": {"a": {"command": ["w"]}, "b": {"command": ["w"]}}})"),
            "no error");
}

TEST(ConfigLoaderTest, ListenersThatCannotBothBindAreAnError) {
  auto two = [](const std::string& a, const std::string& b) {
    return error_of(R"({"admin": {"address": "off"}, "listeners": [{"name": "a", "address": ")" +
                    a + R"(", "routes": [{"service": "w"}]}, {"name": "b", "address": ")" + b +
                    R"(", "routes": [{"service": "w"}]}], "services": {"w": {"command": ["w"]}}})");
  };
  for (auto [a, b] : {std::pair{"127.0.0.1:80", "127.0.0.1:80"}, std::pair{":80", "127.0.0.1:80"},
                      std::pair{"127.0.0.1:80", "0.0.0.0:80"}, std::pair{"[::]:80", "[::1]:80"},
                      std::pair{"[::1]:80", "[0:0::1]:80"}})
    EXPECT_NE(two(a, b).find("cannot both listen"), std::string::npos) << a << " " << b;
  // IPv6 listeners are IPV6_V6ONLY; port 0 is a fresh port each time.
  for (auto [a, b] : {std::pair{":80", "[::]:80"}, std::pair{"127.0.0.1:80", "127.0.0.2:80"},
                      std::pair{":80", ":81"}, std::pair{":0", ":0"}})
    EXPECT_EQ(two(a, b), "no error") << a << " " << b;
}

TEST(ConfigLoaderTest, AListenerOnTheAdminPortIsAnErrorUnlessTheAdminEndpointMoves) {
  const std::string json =
      R"({"listeners": [{"address": ":9090", "routes": [{"service": "w"}]}],
          "services": {"w": {"command": ["w"]}}})";
  EXPECT_NE(error_of(json).find("and the admin endpoint (127.0.0.1:9090) cannot both listen"),
            std::string::npos);
  // --admin on the command line wins over the file, and is what is checked.
  AdminSettings off;
  off.enabled = false;
  EXPECT_EQ(parse_config(json, "c.json", &off).listeners.size(), 1u);
  AdminSettings elsewhere;
  elsewhere.address = parse_listen_address("127.0.0.1:9191");
  EXPECT_EQ(parse_config(json, "c.json", &elsewhere).admin.address.port, 9191);
}

TEST(ConfigLoaderTest, ReadinessAndCooloffAreRead) {
  Config c = parse_config(
      R"({"listeners": [{"name": "l", "address": ":0"}],
          "services": {"w": {"command": ["w"], "mode": "listen_fds", "listener": "l",
                             "readiness": "notify", "cooloff": 0}}})",
      "c.json");
  EXPECT_EQ(c.services[0].service.readiness, supervisor::Readiness::notify);
  EXPECT_EQ(c.services[0].service.restart.cooloff, supervisor::Duration::zero());
  EXPECT_EQ(parse_config(R"({"services": {"w": {"command": ["w"]}}})", "c.json")
                .services[0]
                .service.restart.cooloff,
            std::chrono::seconds(10));
  EXPECT_EQ(error_of(R"({"services": {"w": {"command": ["w"], "readiness": "started"}}})"),
            "c.json:1:52: $.services.w.readiness: applies to listen_fds services only (a handoff "
            "worker says `ready`; a plain one is ready once it runs)");
}

// Workers are processes unless a service says "process": false.
TEST(ConfigLoaderTest, ProcessIsOnUnlessTurnedOff) {
  EXPECT_TRUE(parse_config(R"({"services": {"w": {"command": ["w"]}}})", "c.json")
                  .services[0]
                  .service.process_channel);
  EXPECT_FALSE(
      parse_config(R"({"services": {"w": {"command": ["w"], "mode": "plain", "process": false}}})",
                   "c.json")
          .services[0]
          .service.process_channel);
  EXPECT_EQ(error_of(R"({"services": {"w": {"command": ["w"], "process": 1}}})"),
            "c.json:1:50: $.services.w.process: expected true or false, found an integer");
}

}  // namespace
}  // namespace occasional::gateway
