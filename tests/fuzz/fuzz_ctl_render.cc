// Fuzz target "ctl_render": everything kagzictl prints (ctl/render.h), fed
// with records whose text comes from the input, as a hostile database row
// or plugin could make them: names, ids, errors, idempotency keys with
// quotes, SQL, control characters and invalid UTF-8, and inputs and outputs
// that may or may not be JSON.
//
// Properties:
//   - human output (EscapeText, tables, field lists, previews) holds no
//     terminal control byte except the newlines ending its lines, and is
//     valid UTF-8;
//   - every --json document is one line, valid JSON (ValidateJson), free of
//     control bytes, and keeps each string field exactly (after the U+FFFD
//     repair of invalid UTF-8);
//   - CompactJson accepts whatever ValidateJson accepts, returns valid JSON,
//     and is idempotent.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

#include "fuzz_support.h"
#include "kagzi/core/validation.h"
#include "render.h"

namespace {

using kagzi::fuzz::FuzzInput;
using kagzi::fuzz::HasControlBytes;
namespace ctl = kagzi::ctl;

std::optional<std::string> MaybeString(FuzzInput& in, std::size_t max_len) {
  if (!in.Bool()) return std::nullopt;
  return in.String(max_len);
}

std::optional<kagzi::Micros> MaybeTime(FuzzInput& in) {
  if (!in.Bool()) return std::nullopt;
  return in.Integral<kagzi::Micros>();
}

kagzi::RunRecord MakeRun(FuzzInput& in) {
  kagzi::RunRecord run;
  run.id = in.String(40);
  run.workflow = in.String(300);
  if (in.Bool()) run.version = in.Integral<int>();
  run.status = static_cast<kagzi::RunStatus>(in.Byte() % 6);
  run.input = in.String(200);
  run.output = MaybeString(in, 200);
  run.error = MaybeString(in, 200);
  run.attempts = in.Integral<int>();
  run.created_at = in.Integral<kagzi::Micros>();
  run.started_at = MaybeTime(in);
  run.finished_at = MaybeTime(in);
  run.available_at = in.Integral<kagzi::Micros>();
  run.deadline_at = MaybeTime(in);
  run.parent_run_id = MaybeString(in, 40);
  run.idempotency_key = MaybeString(in, 300);
  run.cancel_requested = in.Bool();
  run.cancel_reason = MaybeString(in, 100);
  return run;
}

kagzi::StepRecord MakeStep(FuzzInput& in) {
  kagzi::StepRecord s;
  s.step_id = in.String(300);
  s.seq = in.Integral<int>();
  s.kind = static_cast<kagzi::StepKind>(in.Byte() % 5);
  s.status = static_cast<kagzi::StepStatus>(in.Byte() % 4);
  s.output = MaybeString(in, 200);
  s.error = MaybeString(in, 200);
  s.error_kind = static_cast<kagzi::ErrorKind>(in.Byte() % 4);
  s.attempts = in.Integral<int>();
  s.wake_at = MaybeTime(in);
  s.started_at = MaybeTime(in);
  s.finished_at = in.Integral<kagzi::Micros>();
  s.event_name = MaybeString(in, 100);
  s.child_run_id = MaybeString(in, 40);
  return s;
}

void CheckHuman(const std::string& text) {
  FUZZ_CHECK(!HasControlBytes(text, "\n"), text);
  FUZZ_CHECK(kagzi::IsValidUtf8(text), text);
}

// The string as WriteString stores it: invalid UTF-8 becomes U+FFFD.
std::string Repaired(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t len = 0;
    for (std::size_t n = 1; n <= 4 && i + n <= s.size(); ++n) {
      if (kagzi::IsValidUtf8(s.substr(i, n))) {
        len = n;
        break;
      }
    }
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.substr(i, len));
      i += len;
    }
  }
  return out;
}

void CheckJsonDocument(const std::string& doc_text, const kagzi::RunRecord& run) {
  FUZZ_CHECK(!doc_text.empty() && doc_text.back() == '\n', doc_text);
  const std::string_view body(doc_text.data(), doc_text.size() - 1);
  FUZZ_CHECK(body.find('\n') == std::string_view::npos, doc_text);
  FUZZ_CHECK(!HasControlBytes(body), doc_text);
  const kagzi::Status st = kagzi::ValidateJson(body, "document", 1 << 24);
  FUZZ_CHECK(st.ok(), st.message() + "\n" + doc_text);
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(body.data(), body.size());
  FUZZ_CHECK(!doc.HasParseError() && doc.IsObject(), doc_text);
  auto text_of = [&](const char* key) {
    const auto& v = doc[key];
    return std::string(v.GetString(), v.GetStringLength());
  };
  FUZZ_CHECK(text_of("workflow") == Repaired(run.workflow), doc_text);
  if (run.idempotency_key) {
    FUZZ_CHECK(text_of("idempotency_key") == Repaired(*run.idempotency_key), doc_text);
  }
}

void CheckCompact(std::string_view json) {
  const bool valid = kagzi::ValidateJson(json, "json", 1 << 24).ok();
  std::optional<std::string> compact = ctl::CompactJson(json);
  if (valid) FUZZ_CHECK(compact.has_value(), std::string(json));
  if (!compact) return;
  const kagzi::Status st = kagzi::ValidateJson(*compact, "compact", 1 << 24);
  FUZZ_CHECK(st.ok(), st.message() + "\n" + *compact);
  FUZZ_CHECK(ctl::CompactJson(*compact) == compact, *compact);
  const std::string safe = ctl::TerminalSafeJson(*compact);
  FUZZ_CHECK(!HasControlBytes(safe), safe);
  FUZZ_CHECK(kagzi::ValidateJson(safe, "safe", 1 << 24).ok(), safe);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const std::string free_text = in.String(400);
  CheckHuman(ctl::EscapeText(free_text));
  const std::string kept = ctl::EscapeText(free_text, ctl::Newlines::kKeep);
  FUZZ_CHECK(!HasControlBytes(kept, "\n\t"), kept);
  CheckCompact(free_text);
  const std::size_t width = 3 + in.Byte() % 80;
  const std::string preview = ctl::Preview(free_text, width);
  CheckHuman(preview);
  FUZZ_CHECK(ctl::DisplayWidth(preview) <= width, preview);

  std::vector<kagzi::RunRecord> runs;
  std::vector<kagzi::StepRecord> steps;
  const std::size_t n_runs = 1 + in.Byte() % 3;
  for (std::size_t i = 0; i < n_runs; ++i) runs.push_back(MakeRun(in));
  const std::size_t n_steps = in.Byte() % 4;
  for (std::size_t i = 0; i < n_steps; ++i) steps.push_back(MakeStep(in));
  const std::optional<std::string> waiting = MaybeString(in, 100);

  CheckHuman(ctl::RenderRunFields(runs[0], waiting));
  CheckHuman(ctl::RenderRunsTable(runs));
  CheckHuman(ctl::RenderChildrenTable(runs));
  CheckHuman(ctl::RenderStepsTable(steps));

  for (const auto& run : runs) {
    rapidjson::StringBuffer buffer;
    ctl::JsonWriter w(buffer);
    w.StartObject();
    ctl::WriteRunMembers(w, run);
    ctl::WriteString(w, "steps");
    w.StartArray();
    for (const auto& step : steps) ctl::WriteStep(w, step);
    w.EndArray();
    w.EndObject();
    CheckJsonDocument(ctl::FinishJson(buffer), run);
  }
  return 0;
}
