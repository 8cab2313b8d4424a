// A workflow plugin as a user writes one, built out of tree with the SDK.
//
// greet_later (version GREET_VERSION, 1 by default): a step, a durable sleep
// of input "sleep_ms" (default 0), a step whose result says which version's
// code ran. Two builds of this file with different versions, loaded side by
// side, show that a run keeps the version it started on.
//
// net_check (version 1 builds only): a step that resolves input "host" and
// opens a TCP connection to input "port", to show that a plugin may make
// network calls inside kagzid's systemd sandbox.
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>

#include <kagzi/kagzi.hpp>

#ifndef GREET_VERSION
#define GREET_VERSION 1
#endif
#define GREET_STR2(x) #x
#define GREET_STR(x) GREET_STR2(x)

KAGZI_WORKFLOW(greet_later, GREET_VERSION, ctx, input) {
  const std::string name = input.value("name", "world");
  const std::chrono::milliseconds wait(input.value<std::int64_t>("sleep_ms", 0));
  const std::string user = ctx.step("fetch-user", [&] { return "user-" + name; });
  ctx.sleep("wait", wait);
  const std::string greeting = ctx.step("greet", [&] {
    ctx.info("greet: greeting ", user, " from version ", GREET_VERSION);
    return "v" GREET_STR(GREET_VERSION) ": hello, " + user;
  });
  return kagzi::Json{{"greeting", greeting}, {"version", GREET_VERSION}};
}

#if GREET_VERSION == 1
KAGZI_WORKFLOW(net_check, 1, ctx, input) {
  const std::string host = input.value("host", "localhost");
  const std::string port = input.value("port", "5432");
  return ctx.step("connect", [&] {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
    if (rc != 0) {
      return kagzi::Json{{"resolved", false}, {"connected", false}, {"error", gai_strerror(rc)}};
    }
    bool connected = false;
    for (addrinfo* a = found; a != nullptr && !connected; a = a->ai_next) {
      const int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (fd < 0) continue;
      connected = connect(fd, a->ai_addr, a->ai_addrlen) == 0;
      close(fd);
    }
    freeaddrinfo(found);
    ctx.info("connect: ", host, ":", port, connected ? " reachable" : " not reachable");
    return kagzi::Json{{"resolved", true}, {"connected", connected}};
  });
}
#endif

KAGZI_PLUGIN("greet_later-v" GREET_STR(GREET_VERSION), "1.0.0");
