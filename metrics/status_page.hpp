#pragma once

#include <string_view>

namespace occasional::metrics {

// metrics/status_page.html, built into the binary (metrics/embed_file.cmake):
// the page GET / serves.
std::string_view status_page_html();

}  // namespace occasional::metrics
