#pragma once

#include <string_view>

namespace occasional::gateway {

// The answer a connection routed (or being routed) by HTTP gets when the
// gateway closes it itself, as nginx and HAProxy answer: 400 for a
// malformed request or a bad Host, 404 for no route, 408 for a peek
// timeout, 431 for a head too large to route, 503 when no worker took it in
// time. Other routes (preface, tls_sni, default) keep the bare close: their
// bytes are not HTTP, or not known to be.

// The status for a reject reason (the `reason` label of
// occasional_connections_rejected_total); 0 when that reason gets no answer.
int http_refusal_status(std::string_view reason);

// Sends the answer for `reason` on `fd`, if it has one, with
// `Connection: close`, without blocking: best effort, whatever the socket
// buffer takes. What the client sent is read away first (at most 64 KiB),
// so that the close that follows sends FIN after the answer, not a reset
// that may discard it. A HEAD request gets the head alone.
void send_http_refusal(int fd, std::string_view reason);

}  // namespace occasional::gateway
