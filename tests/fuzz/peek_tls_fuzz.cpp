// libFuzzer target: parse_tls_client_hello on arbitrary bytes.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "gateway/peek_parsers.hpp"

using occasional::gateway::PeekStatus;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const auto hello = occasional::gateway::parse_tls_client_hello(bytes);
  // A server name comes only from a complete hello, and fits in what was given.
  if (!hello.sni.empty() && (hello.status != PeekStatus::complete || hello.sni.size() > size))
    std::abort();
  return 0;
}
