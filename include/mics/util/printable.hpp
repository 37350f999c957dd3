// User text (deck lines, keys, values, file names, file contents) quoted in a message, made visible:
// a NUL would cut the message where it is printed with %s, and a BOM, a control character or a byte
// that is not UTF-8 would print as nothing or garble the terminal.
#pragma once
#include <string>
#include <string_view>

namespace mics {

// `text` with every byte a reader could not see written as an escape: \0 \t \n \r \\ for those, \xHH for
// other control characters (C0, DEL, C1), for bytes that are not well-formed UTF-8, and for the bytes of
// characters that show as nothing or as a space (the byte-order mark U+FEFF is \xEF\xBB\xBF wherever it
// is; no-break space, zero-width and bidirectional marks). Printable ASCII and other UTF-8 stay as they are.
std::string printable(std::string_view text);

}  // namespace mics
