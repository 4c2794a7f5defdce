#include "client/state_file.hpp"

#include <boost/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace tether::detail {

namespace json = boost::json;

namespace {
constexpr std::size_t kFileBytesMax = 256u << 20;

Error unusable(const std::string& path, const std::string& why) {
    return make_error(error::invalid_state, "state file " + path + " is unusable: " + why);
}
}  // namespace

StateLock::StateLock(const std::string& path) {
    const std::string lock = path + ".lock";
    fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0)
        throw std::invalid_argument(
            unusable(path, "cannot open " + lock + ": " + std::strerror(errno)).message);
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        ::close(fd_);
        fd_ = -1;
        throw std::invalid_argument(
            unusable(path, "in use by another client (" + lock + " is locked)").message);
    }
}

StateLock::~StateLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
}

result<std::optional<ClientSnapshot>, Error> load_state(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        if (errno == ENOENT) return std::optional<ClientSnapshot>{};
        return unusable(path, std::strerror(errno));
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    if (text.size() > kFileBytesMax) return unusable(path, "larger than 256 MiB");
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec)
        return unusable(path, "invalid JSON: " + ec.message() + " (move it away to start afresh)");
    try {
        const auto& o = v.as_object();
        if (o.at("version").to_number<std::int64_t>() != 1)
            return unusable(path, "unknown version");
        ClientSnapshot s;
        s.id_prefix = json::value_to<std::string>(o.at("id_prefix"));
        s.next_publish = o.at("next_publish").to_number<std::uint64_t>();
        for (const auto& r : o.at("rooms").as_array()) {
            const auto& ro = r.as_object();
            ClientSnapshot::RoomPosition p;
            p.room = json::value_to<std::string>(ro.at("room"));
            if (ro.contains("epoch"))
                p.position = proto::StreamPosition{ro.at("epoch").to_number<std::uint64_t>(),
                                                   ro.at("offset").to_number<std::uint64_t>()};
            s.rooms.push_back(std::move(p));
        }
        for (const auto& m : o.at("outbox").as_array()) {
            const auto& mo = m.as_object();
            s.outbox.push_back({json::value_to<std::string>(mo.at("id")),
                                json::value_to<std::string>(mo.at("room")),
                                json::serialize(mo.at("data"))});
        }
        return std::optional<ClientSnapshot>{std::move(s)};
    } catch (const std::exception& e) {
        return unusable(path, std::string{"unexpected content: "} + e.what());
    }
}

result<void, Error> save_state(const std::string& path, const ClientSnapshot& s) {
    json::object o;
    o["version"] = 1;
    o["id_prefix"] = s.id_prefix;
    o["next_publish"] = s.next_publish;
    json::array rooms;
    for (const auto& r : s.rooms) {
        json::object ro;
        ro["room"] = r.room;
        if (r.position) {
            ro["epoch"] = r.position->epoch;
            ro["offset"] = r.position->offset;
        }
        rooms.push_back(std::move(ro));
    }
    o["rooms"] = std::move(rooms);
    json::array outbox;
    for (const auto& m : s.outbox) {
        json::object mo;
        mo["id"] = m.id;
        mo["room"] = m.room;
        boost::system::error_code ec;
        mo["data"] = json::parse(m.data, ec);
        if (ec) return make_error(error::invalid_state, "message " + m.id + " is not JSON");
        outbox.push_back(std::move(mo));
    }
    o["outbox"] = std::move(outbox);
    const std::string text = json::serialize(o);

    const std::string tmp = path + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return make_error(error::invalid_state,
                          "cannot write " + tmp + ": " + std::strerror(errno));
    std::size_t off = 0;
    while (off < text.size()) {
        const ssize_t n = ::write(fd, text.data() + off, text.size() - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            const std::string e = std::strerror(errno);
            ::close(fd);
            return make_error(error::invalid_state, "cannot write " + tmp + ": " += e);
        }
        off += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0) {
        const std::string e = std::strerror(errno);
        ::close(fd);
        return make_error(error::invalid_state, "cannot sync " + tmp + ": " + e);
    }
    ::close(fd);
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
        return make_error(error::invalid_state,
                          "cannot replace " + path + ": " + std::strerror(errno));
    return {};
}

}  // namespace tether::detail
