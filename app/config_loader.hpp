#pragma once

#include <string>
#include <string_view>

#include "gateway/config.hpp"

namespace occasional::gateway {

// Reads a JSON configuration (docs/configuration.md). Every error is a
// ConfigError whose message is one line: "FILE:LINE:COL: $.json.path: what
// was wrong and what was expected". Unknown keys are errors.
// `admin`, when given, replaces the file's admin endpoint (enabled and
// address) before the checks: the command line's --admin wins over the file.
Config load_config_file(const std::string& path, const AdminSettings* admin = nullptr);
Config parse_config(std::string_view json, const std::string& origin,
                    const AdminSettings* admin = nullptr);

}  // namespace occasional::gateway
