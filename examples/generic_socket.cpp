// tether::ReconnectingWebSocket against any WebSocket server: an auth message
// first on every connect, then the subscriptions, then what was queued while
// disconnected; RFC 6455 pings detect dead links.
//
//   ./example_generic_socket wss://stream.example.com/ws '{"op":"auth","key":"..."}'
//                            '{"op":"subscribe","channel":"trades"}'
#include <tether/reconnecting_websocket.hpp>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s URL [AUTH_MESSAGE [SUBSCRIPTION...]]\n", argv[0]);
        return 2;
    }
    tether::ReconnectingWebSocketOptions options;
    options.url = argv[1];
    if (argc > 2) {
        const std::string auth = argv[2];
        options.auth = [auth] { return tether::SocketMessage{auth, false}; };
        // Wait for the server's answer; anything mentioning an error rejects.
        options.auth_validator = [](const tether::SocketMessage& m) -> std::optional<bool> {
            return m.data.find("error") == std::string::npos;
        };
    }
    for (int i = 3; i < argc; ++i)
        options.subscriptions.push_back(tether::SocketMessage{argv[i], false});
    options.ping_interval = std::chrono::seconds(10);
    options.pong_timeout = std::chrono::seconds(5);

    try {
        tether::ReconnectingWebSocket ws{options};
        ws.on_status([](const tether::SocketStatus& s) {
            std::fprintf(stderr, "-- %s\n",
                         tether::describe(s, tether::ReconnectingWebSocket::now()).c_str());
        });
        ws.on_message([](const tether::SocketMessage& m) {
            std::printf("%s\n", m.binary ? "<binary>" : m.data.c_str());
            std::fflush(stdout);
        });
        std::string line;
        while (std::getline(std::cin, line))
            ws.send(line);
        if (!ws.flush(std::chrono::seconds(5)))
            std::fprintf(stderr, "generic_socket: %s\n", ws.status_line().c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "generic_socket: %s\n", e.what());
        return 1;
    }
    return 0;
}
