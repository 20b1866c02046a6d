// libFuzzer target: the External Term Format decoder, which reads whatever
// another process sends on a channel (any executable may speak it).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "workers/etf.hpp"

namespace {

using namespace occasional;

std::string must_encode(const Value& v) {
  std::string out;
  etf::Error error;
  // Whatever the decoder accepts, the encoder writes: no value is one-way.
  if (!etf::encode(v, out, error)) std::abort();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  etf::Error error;
  const std::optional<Value> v = etf::decode(bytes, error);
  if (!v) {
    // A reason label, a sentence, and an offset inside the input.
    if (std::string_view(etf::errc_name(error.code)) == "unknown") std::abort();
    if (error.detail.empty() || error.offset > size) std::abort();
    return 0;
  }
  const std::string again = must_encode(*v);
  const std::optional<Value> round = etf::decode(again, error);
  if (!round || *round != *v) std::abort();
  // Our encoding is canonical: encoding the round trip gives the same bytes.
  if (must_encode(*round) != again) std::abort();
  (void)v->to_string();

  // The framing helpers agree with the codec.
  std::string frame;
  if (!etf::append_frame(frame, *v, error)) std::abort();
  const etf::FrameSplit split = etf::split_frame(frame);
  if (split.status != etf::FrameSplit::Status::complete || split.term != again ||
      split.consumed != frame.size())
    std::abort();
  return 0;
}
