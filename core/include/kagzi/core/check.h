// KAGZI_CHECK: crash loudly on what is impossible (a broken invariant of our
// own code), never on what is merely likely (bad input, lost connections),
// which are Status values. Aborting is safe: durable state survives restarts.
#pragma once

#include <cstdio>
#include <cstdlib>

#define KAGZI_CHECK(cond)                                                                    \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "kagzi: check failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)
