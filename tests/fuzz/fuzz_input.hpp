#pragma once
// Reads fuzzer bytes as a stream of small decisions (FuzzedDataProvider's
// idea, in a few lines): every read is bounded and never fails -- an
// exhausted input reads as zeros.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tether::fuzz {

class Input {
  public:
    Input(const std::uint8_t* data, std::size_t size) : p_(data), end_(data + size) {}
    bool empty() const noexcept { return p_ == end_; }
    std::uint8_t byte() noexcept { return p_ == end_ ? 0 : *p_++; }
    std::uint32_t u16() noexcept { return static_cast<std::uint32_t>(byte()) << 8 | byte(); }
    /// A string of up to `max` bytes (length byte first).
    std::string str(std::size_t max = 255) {
        const std::size_t n = std::min<std::size_t>(byte(), max);
        const std::size_t take = std::min<std::size_t>(n, static_cast<std::size_t>(end_ - p_));
        std::string s(reinterpret_cast<const char*>(p_), take);
        p_ += take;
        return s;
    }
    /// One of a few plausible values, or fuzzer bytes.
    std::string pick(std::initializer_list<std::string_view> options) {
        const auto i = byte();
        if (i < options.size()) return std::string{*(options.begin() + i)};
        return str(64);
    }

  private:
    const std::uint8_t* p_;
    const std::uint8_t* end_;
};

}  // namespace tether::fuzz
