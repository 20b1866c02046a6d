#include <arpa/inet.h>
#include <netinet/in.h>

#include <gtest/gtest.h>
#include <string>

#include "gateway/listener.hpp"

namespace occasional::gateway {
namespace {

std::string v4(const char* host, uint16_t port) {
  sockaddr_storage ss{};
  auto* a = reinterpret_cast<sockaddr_in*>(&ss);
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  EXPECT_EQ(::inet_pton(AF_INET, host, &a->sin_addr), 1) << host;
  return sockaddr_text(ss);
}

std::string v6(const char* host, uint16_t port) {
  sockaddr_storage ss{};
  auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
  a->sin6_family = AF_INET6;
  a->sin6_port = htons(port);
  EXPECT_EQ(::inet_pton(AF_INET6, host, &a->sin6_addr), 1) << host;
  return sockaddr_text(ss);
}

TEST(SockaddrTextTest, IPv4AddressesReadAsInetNtopWritesThem) {
  EXPECT_EQ(v4("127.0.0.1", 50312), "127.0.0.1:50312");
  EXPECT_EQ(v4("0.0.0.0", 0), "0.0.0.0:0");
  EXPECT_EQ(v4("255.255.255.255", 65535), "255.255.255.255:65535");
  EXPECT_EQ(v4("10.20.3.100", 8), "10.20.3.100:8");
  // Every octet value, against the C library's own formatting.
  for (unsigned n = 0; n < 256; ++n) {
    const std::string host =
        std::to_string(n) + "." + std::to_string(255 - n) + ".1." + std::to_string(n % 10);
    EXPECT_EQ(v4(host.c_str(), static_cast<uint16_t>(n * 257)),
              host + ":" + std::to_string(n * 257));
  }
}

TEST(SockaddrTextTest, IPv6AddressesAreBracketed) {
  EXPECT_EQ(v6("::1", 8080), "[::1]:8080");
  EXPECT_EQ(v6("fe80::1:2", 1), "[fe80::1:2]:1");
}

}  // namespace
}  // namespace occasional::gateway
