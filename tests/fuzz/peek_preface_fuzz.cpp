// libFuzzer target: parse_preface on arbitrary bytes.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "gateway/peek_parsers.hpp"

using occasional::gateway::PeekStatus;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const auto p = occasional::gateway::parse_preface(bytes);
  if (p.status == PeekStatus::complete) {
    // What the gateway consumes lies within what it peeked, and names the service.
    if (p.consume == 0 || p.consume > size || p.name.empty() || p.name.size() > 64) std::abort();
    if (p.name.data() != bytes.data()) std::abort();
  }
  // A prefix of a complete preface is never invalid.
  if (p.status == PeekStatus::complete && size > 1 &&
      occasional::gateway::parse_preface(bytes.substr(0, p.consume - 1)).status ==
          PeekStatus::invalid)
    std::abort();
  return 0;
}
