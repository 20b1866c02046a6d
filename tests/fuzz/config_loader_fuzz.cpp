// libFuzzer target: parse_config on arbitrary bytes. Every input either
// gives a configuration or a ConfigError with a one-line message.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "app/config_loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  try {
    occasional::gateway::parse_config(json, "fuzz.json");
  } catch (const occasional::gateway::ConfigError& e) {
    const std::string_view message = e.what();
    if (message.empty() || message.find('\n') != std::string_view::npos) std::abort();
    if (!message.starts_with("fuzz.json")) std::abort();
  }
  return 0;
}
