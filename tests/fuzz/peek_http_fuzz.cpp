// libFuzzer target: parse_http_head on arbitrary bytes.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "gateway/peek_parsers.hpp"

using occasional::gateway::PeekStatus;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const auto h = occasional::gateway::parse_http_head(bytes);
  if (h.status == PeekStatus::complete) {
    // The host is lowercased and the path is a path.
    for (char c : h.host)
      if (c >= 'A' && c <= 'Z') std::abort();
    if (!h.path.empty() && h.path[0] != '/') std::abort();
    // The path is normalised: no dot segment is left for a server to resolve.
    const std::string_view p = h.path;
    if (p.find("/../") != p.npos || p.find("/./") != p.npos || p.ends_with("/..") ||
        p.ends_with("/."))
      std::abort();
  }
  // More bytes never turn a complete head into an incomplete one.
  if (h.status == PeekStatus::complete) {
    std::string longer(bytes);
    longer += "X";
    if (occasional::gateway::parse_http_head(longer).status == PeekStatus::need_more) std::abort();
  }
  return 0;
}
