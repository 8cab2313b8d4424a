// plugins/welcome_email/welcome_email.cc -- a multi-step workflow in C++, through kagzi.hpp.
//
// Workflow "welcome_email", version 1: create the user, wait durably before
// emailing, send the welcome email, mark the user onboarded. Input:
//   {"email": "ada@example.com", "name": "Ada", "sleep_ms": 5000}
// "name" defaults to the email, "sleep_ms" (the wait) to 5000. The side effects
// are simulated with log lines, each naming its step (the host adds the run
// id, the idempotency key a real service call would carry). No state is
// shared between runs.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <kagzi/kagzi.hpp>

namespace {

struct User {
  std::string id;
  std::string email;
  std::string name;
};

}  // namespace

// How a User is recorded in the run's journal (the result of "create-user").
template <>
struct kagzi::Codec<User> {
  static std::string encode(const User& user) {
    return kagzi::Json{{"id", user.id}, {"email", user.email}, {"name", user.name}}.dump();
  }
  static User decode(std::string_view json) {
    const kagzi::Json user = kagzi::Json::parse(json);
    return User{user.at("id").as<std::string>(), user.at("email").as<std::string>(),
                user.at("name").as<std::string>()};
  }
};

KAGZI_WORKFLOW(welcome_email, 1, ctx, input) {
  const std::string email = input.value("email", "");
  if (email.empty()) {
    throw kagzi::PermanentError(R"(input needs "email", e.g. {"email": "ada@example.com"})");
  }
  const std::string name = input.value("name", email);
  const std::chrono::milliseconds wait(input.value<std::int64_t>("sleep_ms", 5000));

  const User user = ctx.step("create-user", [&] {
    User created{"user-" + std::string(ctx.run_id()), email, name};
    ctx.info("create-user: created ", created.id, " for ", created.email);
    return created;
  });

  // Parks the run: no thread, connection or lease is held while it waits.
  ctx.sleep("wait-before-email", wait);

  const std::string message_id = ctx.step("send-email", [&] {
    ctx.info("send-email: sent welcome email to ", user.name, " <", user.email,
             ">, idempotency key ", ctx.run_id());
    return "msg-" + std::string(ctx.run_id());
  });

  ctx.step("mark-onboarded", [&] { ctx.info("mark-onboarded: ", user.id, " onboarded"); });

  return kagzi::Json{
      {"user_id", user.id}, {"email", user.email}, {"message_id", message_id}, {"onboarded", true}};
}

KAGZI_PLUGIN("welcome_email", "1.0.0");
