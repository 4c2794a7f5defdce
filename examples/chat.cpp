// A small chat: every line you type goes to the room; every message of the
// room is printed once, in order, also the ones sent while you were away.
// The status line follows the connection (retry countdown, sending x of y).
// With a state file, unsent lines survive a crash of this program too.
//
//   ./example_chat ws://127.0.0.1:8080/ general alice [state.json]
#include <tether/client.hpp>

#include <cstdio>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s ws://host:port/ ROOM NAME [STATE_FILE]\n", argv[0]);
        return 2;
    }
    const std::string name = argv[3];
    tether::ClientOptions options;
    options.url = argv[1];
    options.token = name;  // with --allow-anonymous the token is the user name
    if (argc > 4) options.state_file = argv[4];

    try {
        tether::Client client{options};
        client.on_status([](const tether::ClientStatus& s) {
            std::fprintf(stderr, "-- %s\n", tether::describe(s, tether::Client::now()).c_str());
        });
        tether::RoomOptions handlers;
        handlers.on_message = [](const tether::MessageReceived& m) {
            std::printf("%s\n", m.data.c_str());  // {"from":"alice","text":"hi"}
            std::fflush(stdout);
        };
        handlers.on_history_lost = [](const tether::HistoryLost& h) {
            std::fprintf(stderr, "-- messages after #%llu are gone; showing from #%llu\n",
                         static_cast<unsigned long long>(h.last_delivered.offset),
                         static_cast<unsigned long long>(h.resumed_at.offset));
        };
        auto room = client.join(argv[2], handlers);

        std::string line;
        while (std::getline(std::cin, line)) {
            std::string text;  // escape the line as a JSON string
            for (char c : line) {
                if (c == '"' || c == '\\') text += '\\';
                if (static_cast<unsigned char>(c) >= 0x20) text += c;
            }
            room.publish(R"({"from":")" + name + R"(","text":")" + text + "\"}",
                         [](const tether::PublishOutcome& r) {
                             if (!r.ok())
                                 std::fprintf(stderr, "-- not sent: %s\n", r.reason.c_str());
                         });
        }
        // End of input: wait for the acks.
        if (!client.flush(std::chrono::seconds(10)))
            std::fprintf(stderr, "-- %zu message(s) not acknowledged yet\n", client.pending());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "chat: %s\n", e.what());
        return 1;
    }
    return 0;
}
