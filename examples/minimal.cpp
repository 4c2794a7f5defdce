// The smallest useful tether client: join a room, print what arrives,
// publish one message and wait for its acknowledgement.
//
//   tether serve --memory --allow-anonymous &
//   ./example_minimal ws://127.0.0.1:8080/ lobby
//
// Kill and restart the server while it runs: the client reconnects, resumes
// and prints every message exactly once.
#include <tether/client.hpp>

#include <chrono>
#include <cstdio>
#include <future>
#include <string>

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s ws://host:port/ ROOM [TOKEN]\n", argv[0]);
        return 2;
    }
    tether::ClientOptions options;
    options.url = argv[1];
    options.token = argc > 3 ? argv[3] : "example-user";

    tether::Client client{options};  // runs on its own thread, connects at once
    client.on_status([](const tether::ClientStatus& s) {
        std::fprintf(stderr, "[%s]\n", tether::describe(s, tether::Client::now()).c_str());
    });

    tether::RoomOptions handlers;
    handlers.on_message = [](const tether::MessageReceived& m) {
        std::printf("%s #%llu: %s%s\n", m.room.c_str(),
                    static_cast<unsigned long long>(m.position.offset), m.data.c_str(),
                    m.replayed ? " (replayed)" : "");
    };
    auto room = client.join(argv[2], handlers);

    std::promise<tether::PublishOutcome> acked;
    room.publish(R"({"text":"hello from the minimal example"})",
                 [&](const tether::PublishOutcome& r) { acked.set_value(r); });
    const auto r = acked.get_future().get();  // waits through reconnects
    if (!r.ok()) {
        std::fprintf(stderr, "publish failed: %s %s\n", r.error.message().c_str(),
                     r.reason.c_str());
        return 1;
    }
    std::printf("stored at offset %llu\n", static_cast<unsigned long long>(r.position.offset));
    std::fflush(stdout);
    return 0;  // the destructor closes cleanly, bounded by close_timeout
}
