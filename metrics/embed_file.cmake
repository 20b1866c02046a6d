# cmake -DINPUT=file -DOUTPUT=file.cpp -DNAME=function -P embed_file.cmake
# Writes a C++ source whose function `occasional::metrics::NAME()` returns
# INPUT's bytes: a page served from the binary needs no file at run time.
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)"
       "\\1\n" bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp"
"// Generated from ${INPUT} by embed_file.cmake: do not edit.
#include <string_view>

namespace occasional::metrics {
namespace {
const char kBytes[] = {
${bytes}0};
}  // namespace

std::string_view ${NAME}() {
  return {kBytes, ${size}};
}

}  // namespace occasional::metrics
")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
