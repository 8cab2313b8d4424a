// Names for status codes.
#include "kagzi/core/status.h"

namespace kagzi {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kInvalidArgument:
      return "invalid argument";
    case StatusCode::kNotFound:
      return "not found";
    case StatusCode::kConflict:
      return "conflict";
    case StatusCode::kUnavailable:
      return "unavailable";
    case StatusCode::kPermanent:
      return "permanent";
    case StatusCode::kInternal:
      return "internal";
  }
  return "unknown";
}

}  // namespace kagzi
