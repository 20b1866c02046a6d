#pragma once

#include <string>
#include <string_view>

namespace occasional::workers {

// Appends `s` to `out` as a JSON string literal, quotes included. Bytes are
// passed through as they are (the caller's strings are UTF-8); control
// characters, quotes and backslashes are escaped.
void append_json_string(std::string& out, std::string_view s);

}  // namespace occasional::workers
