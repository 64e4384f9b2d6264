#include <asyncore/producer.hpp>

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <vector>

TEST_SUITE("producer") {
    TEST_CASE("SimpleProducer hands out its data in chunks of buffer_size, then empty") {
        asyncore::SimpleProducer p("hello world\nI'm not dead yet!\n", 8);
        std::vector<std::string> chunks;
        for (std::string c = p.more(); !c.empty(); c = p.more())
            chunks.push_back(c);
        CHECK(chunks == std::vector<std::string>{"hello wo", "rld\nI'm ", "not dead", " yet!\n"});
        CHECK(p.more().empty());
        CHECK(p.remaining() == 0);
    }

    TEST_CASE("SimpleProducer's default chunk is 512 bytes, as asynchat's") {
        asyncore::SimpleProducer p(std::string(1300, 'x'));
        CHECK(p.remaining() == 1300);
        CHECK(p.more().size() == 512);
        CHECK(p.more().size() == 512);
        CHECK(p.more().size() == 276);
        CHECK(p.more().empty());
    }

    TEST_CASE("an empty SimpleProducer is exhausted at once") {
        asyncore::SimpleProducer p("", 4);
        CHECK(p.more().empty());
    }

    TEST_CASE("SimpleProducer rejects a zero buffer size") {
        CHECK_THROWS_AS(asyncore::SimpleProducer("abc", 0), std::invalid_argument);
    }
}
