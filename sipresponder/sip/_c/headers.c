/* Loops of the per-message path in C, loaded through ``sip/_speedups.py``.

   ``usual_headers`` does what ``sipresponder/sip/parser.py``'s ``_usual_headers`` does, on
   the same arguments, with the same result: it is that function's loop without the
   interpreter's cost per line (about a third of the parse of a request, compiled by
   mypyc, went to the loop's string searches, slices and lookups).  ``decimal`` does what
   ``message._decimal`` does, ``frame_head`` what ``framer._frame_head`` does (the TCP
   framer's regex, set and method calls took a ninth of an OPTIONS over TCP),
   ``via_params`` what ``message._python_via_params`` does (3.6k instructions a Via),
   ``party`` what ``uri.check_name_addr`` and ``message.tag_of`` do for a From or
   To in the usual spelling, ``request_line`` what ``parser._python_request_line`` does
   for a line with nothing wrong in it, and ``to_tag`` what ``responses._make_to_tag`` does (hashlib's keyed BLAKE2s, with its
   object, copy and hex string, took 6k instructions per tag).  The Python functions stay
   the definitions: the pure-Python core runs them, and property tests feed both the same
   input and compare everything they return and fill in (tests/unit/test_scan.py).

   Only a text of ASCII characters is scanned by ``usual_headers`` (the usual request);
   for any other the result is -2 and the caller runs the Python function.  Nothing is
   written outside the two containers it is given, and every index stays within
   [pos, end), which is checked against the text's length before anything is read.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Names as spelled -> their key: a small cache of ``keys`` (the parser's ``_KEYS``) that
   needs no string object to look a name up.  The cache belongs to one dict at a time
   (``cache_keys``): a call with another dict, or with the same dict after it shrank
   (the parser clears ``_KEYS`` when it is full), empties it first, so that a name is
   found only when it is in the ``keys`` given.  Between those, ``keys`` only gains names
   and a name's key is a function of the name (``_header_key``), so an entry never goes
   stale; a full slot is simply overwritten.  Each entry holds a reference to its key. */
#define CACHE_SLOTS 256  /* a power of two */
#define CACHE_PROBES 4
#define CACHE_NAME 32    /* longer names are looked up in the dict every time */

typedef struct {
    Py_ssize_t length;  /* 0: empty */
    char name[CACHE_NAME];
    PyObject *key;
} cached_name;

static cached_name cache[CACHE_SLOTS];  /* process-wide: the GIL guards it */
static PyObject *cache_keys = NULL;      /* the dict the entries came from (a reference) */
static Py_ssize_t cache_keys_size = 0;   /* its size when last seen */

/* Make the cache one of ``keys``: emptied unless it already is and ``keys`` did not
   shrink since.  Releasing keys and a dict of str runs no Python code. */
static void
cache_for(PyObject *keys)
{
    Py_ssize_t size = PyDict_GET_SIZE(keys);
    if (keys != cache_keys || size < cache_keys_size) {
        for (size_t i = 0; i < CACHE_SLOTS; i++) {
            Py_CLEAR(cache[i].key);
            cache[i].length = 0;
        }
        Py_XSETREF(cache_keys, Py_NewRef(keys));
    }
    cache_keys_size = size;
}

static size_t
name_hash(const char *name, Py_ssize_t length)
{
    size_t h = 2166136261u;  /* FNV-1a */
    for (Py_ssize_t i = 0; i < length; i++)
        h = (h ^ (unsigned char)name[i]) * 16777619u;
    return h;
}

/* The key of text[pos:colon] (a borrowed reference), or NULL: an error if one is set,
   else a name not in ``keys``. */
static PyObject *
lookup_name(PyObject *text, const char *s, Py_ssize_t pos, Py_ssize_t colon, PyObject *keys)
{
    Py_ssize_t length = colon - pos;
    size_t h = 0;
    if (length <= CACHE_NAME) {
        h = name_hash(s + pos, length);
        for (size_t i = 0; i < CACHE_PROBES; i++) {
            cached_name *entry = &cache[(h + i) & (CACHE_SLOTS - 1)];
            if (entry->length == length && memcmp(entry->name, s + pos, (size_t)length) == 0)
                return entry->key;
        }
    }
    PyObject *name = PyUnicode_Substring(text, pos, colon);
    if (name == NULL)
        return NULL;
    PyObject *key = PyDict_GetItemWithError(keys, name);  /* borrowed */
    Py_DECREF(name);
    if (key == NULL || !PyUnicode_CheckExact(key) || length > CACHE_NAME)
        return key;
    cached_name *entry = &cache[h & (CACHE_SLOTS - 1)];
    for (size_t i = 0; i < CACHE_PROBES; i++) {
        cached_name *probe = &cache[(h + i) & (CACHE_SLOTS - 1)];
        if (probe->length == 0) {
            entry = probe;
            break;
        }
    }
    Py_INCREF(key);
    Py_XDECREF(entry->key);  /* a key object: its release runs no Python code */
    entry->key = key;
    entry->length = length;
    memcpy(entry->name, s + pos, (size_t)length);
    return key;
}

/* usual_headers(text, pos, end, keys, hmap, headers, errors, again) -> int

   The number of header lines in text[pos:end], each ``Name: value`` ending in CRLF with a
   name in ``keys``, stored in ``hmap`` (the first line of each key) or passed to
   ``again(headers, key, value, errors)`` (a later line); -1 for a line that is not so;
   -2 for a text that is not all ASCII. */
static PyObject *
usual_headers(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "usual_headers takes 8 arguments");
        return NULL;
    }
    PyObject *text = args[0], *keys = args[3], *hmap = args[4];
    PyObject *headers = args[5], *errors = args[6], *again = args[7];
    if (!PyUnicode_Check(text) || !PyDict_CheckExact(keys) || !PyDict_CheckExact(hmap)) {
        PyErr_SetString(PyExc_TypeError, "usual_headers: text must be str, keys and hmap dict");
        return NULL;
    }
    cache_for(keys);
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t end = PyLong_AsSsize_t(args[2]);
    if (end == -1 && PyErr_Occurred())
        return NULL;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0)  /* a no-op, and deprecated, from Python 3.12 */
        return NULL;
#endif
    if (!PyUnicode_IS_ASCII(text))
        return PyLong_FromLong(-2);
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    /* pos > 0 always (a start line comes first), so text[eol - 1] below is in the text. */
    if (pos < 1 || end > length) {
        PyErr_SetString(PyExc_ValueError, "usual_headers: pos or end out of range");
        return NULL;
    }
    const char *s = (const char *)PyUnicode_1BYTE_DATA(text);
    long count = 0;
    while (pos < end) {
        /* The line's end: its LF, which must follow a CR; the last line ends at ``end``
           (its CRLF begins the blank line there). */
        const char *lf = memchr(s + pos, '\n', (size_t)(end - pos));
        Py_ssize_t eol;
        if (lf == NULL)
            eol = end;
        else if (lf[-1] == '\r')  /* lf >= s + pos >= s + 1 */
            eol = lf - s - 1;
        else
            return PyLong_FromLong(-1);  /* a bare LF */
        if (eol <= pos)
            return PyLong_FromLong(-1);  /* an empty line: no colon after pos */
        const char *colon_at = memchr(s + pos, ':', (size_t)(eol - pos));
        if (colon_at == NULL || colon_at == s + pos)
            return PyLong_FromLong(-1);  /* no name */
        Py_ssize_t colon = colon_at - s;
        PyObject *key = lookup_name(text, s, pos, colon, keys);  /* borrowed */
        if (key == NULL) {
            if (PyErr_Occurred())
                return NULL;
            return PyLong_FromLong(-1);  /* a name the general route learns */
        }
        Py_INCREF(key);  /* held while ``again`` may run Python code */
        Py_ssize_t start = colon + 1;
        if (start < eol && s[start] == ' ')
            start++;  /* the usual single space: no strip needed for it */
        PyObject *value = PyUnicode_Substring(text, start, eol);
        if (value == NULL) {
            Py_DECREF(key);
            return NULL;
        }
        if (eol > start && ((unsigned char)s[start] <= 32 || (unsigned char)s[eol - 1] <= 32)) {
            /* Other whitespace at an end: str.strip's own rules, as the Python function. */
            PyObject *stripped = PyObject_CallMethod(value, "strip", NULL);
            Py_DECREF(value);
            if (stripped == NULL) {
                Py_DECREF(key);
                return NULL;
            }
            value = stripped;
        }
        Py_ssize_t size = PyDict_GET_SIZE(hmap);
        PyObject *stored = PyDict_SetDefault(hmap, key, value);  /* borrowed */
        if (stored == NULL) {
            Py_DECREF(key);
            Py_DECREF(value);
            return NULL;
        }
        if (PyDict_GET_SIZE(hmap) == size) {
            /* A second or later line of the header. */
            PyObject *call[4] = {headers, key, value, errors};
            PyObject *done = PyObject_Vectorcall(again, call, 4, NULL);
            if (done == NULL) {
                Py_DECREF(key);
                Py_DECREF(value);
                return NULL;
            }
            Py_DECREF(done);
        }
        Py_DECREF(key);
        Py_DECREF(value);
        count++;
        pos = eol + 2;
    }
    return PyLong_FromLong(count);
}

/* decimal(text, digits) -> int | None

   ``message.decimal``: ``text`` as a number when it is 1 to ``digits`` ASCII digits, else
   None.  Leading zeros are allowed, as ``int()`` allows them. */
static PyObject *
decimal(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "decimal takes a str and an int");
        return NULL;
    }
    PyObject *text = args[0];
    Py_ssize_t digits = PyLong_AsSsize_t(args[1]);
    if (digits == -1 && PyErr_Occurred())
        return NULL;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0)
        return NULL;
#endif
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    if (length <= 0 || length > digits || !PyUnicode_IS_ASCII(text))
        Py_RETURN_NONE;
    const char *s = (const char *)PyUnicode_1BYTE_DATA(text);
    long long value = 0;  /* exact up to 18 digits; only those are summed here */
    for (Py_ssize_t i = 0; i < length; i++) {
        if (s[i] < '0' || s[i] > '9')
            Py_RETURN_NONE;
        if (i < 18)
            value = value * 10 + (s[i] - '0');
    }
    if (length > 18)  /* beyond what a long long holds for certain */
        return PyLong_FromUnicodeObject(text, 10);
    return PyLong_FromLongLong(value);
}

/* The framer's codes (framer.FRAME_*). */
#define FRAME_WAIT (-1)
#define FRAME_TOO_LARGE (-2)
#define FRAME_BAD_LENGTH (-3)

static int
is_blank(char c)  /* what bytes.strip() strips, but for CR and LF (a value has none) */
{
    return c == ' ' || c == '\t' || c == '\x0b' || c == '\x0c';
}

static char
lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

/* frame_head(buf, pos, max_size) -> int

   ``framer._frame_head``: the length of the message at buf[pos] from the end of its
   header section (the first CRLF CRLF) and its Content-Length lines, or a FRAME_ code.
   The lines are those the parser's regex ``\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)``
   (case-insensitive) finds in buf[pos:end + 2]: every one found must carry the same
   value, 1 to 9 ASCII digits once blanks are stripped. */
static PyObject *
frame_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "frame_head takes a buffer and two ints");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t max_size = pos == -1 && PyErr_Occurred() ? -1 : PyLong_AsSsize_t(args[2]);
    if (max_size == -1 && PyErr_Occurred()) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const char *s = (const char *)view.buf;
    Py_ssize_t size = view.len;
    if (pos < 0 || pos > size) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "frame_head: pos out of the buffer");
        return NULL;
    }
    Py_ssize_t result;
    /* The header section's end: the first CR LF CR LF at or after pos. */
    Py_ssize_t end = -1;
    for (Py_ssize_t i = pos; size - i >= 4;) {
        const char *cr = memchr(s + i, '\r', (size_t)(size - i - 3));
        if (cr == NULL)
            break;
        i = cr - s;
        if (s[i + 1] == '\n' && s[i + 2] == '\r' && s[i + 3] == '\n') {
            end = i;
            break;
        }
        i++;
    }
    if (end < 0) {
        result = size - pos > max_size ? FRAME_TOO_LARGE : FRAME_WAIT;
        goto done;
    }
    Py_ssize_t head_len = end + 4 - pos;
    if (head_len > max_size) {
        result = FRAME_TOO_LARGE;
        goto done;
    }
    /* Every Content-Length line in buf[pos:limit]: each one starts right after an LF. */
    Py_ssize_t limit = end + 2;
    Py_ssize_t value_at = -1, value_len = 0;  /* the first value, stripped */
    int bad = 0;
    for (Py_ssize_t i = pos; i < limit;) {
        const char *lf = memchr(s + i, '\n', (size_t)(limit - i));
        if (lf == NULL)
            break;
        Py_ssize_t j = lf - s + 1;  /* the line's first character */
        i = j;
        static const char long_name[] = "content-length";
        Py_ssize_t k = 0;
        while (k < 14 && j + k < limit && lower(s[j + k]) == long_name[k])
            k++;
        if (k == 14)
            j += 14;
        else if (j < limit && lower(s[j]) == 'l')
            j += 1;
        else
            continue;
        while (j < limit && (s[j] == ' ' || s[j] == '\t'))
            j++;
        if (j >= limit || s[j] != ':')
            continue;
        j++;
        while (j < limit && (s[j] == ' ' || s[j] == '\t'))
            j++;
        Py_ssize_t v = j;
        while (j < limit && s[j] != '\r' && s[j] != '\n')
            j++;
        i = j;  /* the regex goes on after its match */
        Py_ssize_t a = v, b = j;
        while (a < b && is_blank(s[a]))
            a++;
        while (b > a && is_blank(s[b - 1]))
            b--;
        if (value_at < 0) {
            value_at = a;
            value_len = b - a;
        }
        else if (b - a != value_len || memcmp(s + a, s + value_at, (size_t)value_len) != 0)
            bad = 1;  /* two different values */
    }
    Py_ssize_t length = 0;  /* none: the parser answers 400 "Missing Content-Length" */
    if (value_at >= 0) {
        if (bad || value_len < 1 || value_len > 9) {
            result = FRAME_BAD_LENGTH;
            goto done;
        }
        for (Py_ssize_t k = 0; k < value_len; k++) {
            char c = s[value_at + k];
            if (c < '0' || c > '9') {
                result = FRAME_BAD_LENGTH;
                goto done;
            }
            length = length * 10 + (c - '0');
        }
    }
    result = head_len + length > max_size ? FRAME_TOO_LARGE : head_len + length;
done:
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(result);
}

/* BLAKE2s (RFC 7693), enough of it for ``to_tag``: keyed, an 8-byte digest. */
static const uint32_t blake2s_iv[8] = {
    0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au,
    0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u,
};

static const uint8_t blake2s_sigma[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};

#define ROTR32(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define B2S_G(a, b, c, d, x, y)      \
    do {                             \
        a = a + b + (x);             \
        d = ROTR32(d ^ a, 16);       \
        c = c + d;                   \
        b = ROTR32(b ^ c, 12);       \
        a = a + b + (y);             \
        d = ROTR32(d ^ a, 8);        \
        c = c + d;                   \
        b = ROTR32(b ^ c, 7);        \
    } while (0)

/* RFC 7693 §3.2: compress one 64-byte block into h; t counts the bytes so far. */
static void
blake2s_compress(uint32_t h[8], const uint8_t block[64], uint32_t t, int last)
{
    uint32_t m[16], v[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)block[4 * i] | (uint32_t)block[4 * i + 1] << 8 |
               (uint32_t)block[4 * i + 2] << 16 | (uint32_t)block[4 * i + 3] << 24;
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = blake2s_iv[i];
    }
    v[12] ^= t;  /* the counter's high word stays 0: a tag's input is short */
    if (last)
        v[14] = ~v[14];
    for (int r = 0; r < 10; r++) {
        const uint8_t *s = blake2s_sigma[r];
        B2S_G(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
        B2S_G(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
        B2S_G(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
        B2S_G(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
        B2S_G(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
        B2S_G(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
        B2S_G(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
        B2S_G(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++)
        h[i] ^= v[i] ^ v[i + 8];
}

/* The state after the key's block, for the last key seen (a process has one or two). */
static uint8_t keyed_secret[32];
static Py_ssize_t keyed_length = -1;  /* -1: none yet */
static uint32_t keyed_state[8];

/* Longest tag input (Call-ID, From tag, CSeq number) done here; longer ones in Python. */
#define TAG_INPUT 1024

/* to_tag(secret, call_id, from_tag, cseq_num) -> str | None

   ``responses.make_to_tag``: the 16 hex digits of BLAKE2s-64 keyed with ``secret`` over
   ``call_id \0 from_tag \0 cseq_num``.  None (the Python function runs) for a key longer
   than BLAKE2s takes, text that is not all ASCII, or an input longer than TAG_INPUT. */
static PyObject *
to_tag(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyBytes_Check(args[0]) || !PyUnicode_Check(args[1]) ||
        !(args[2] == Py_None || PyUnicode_Check(args[2])) || !PyLong_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "to_tag takes bytes, a str, a str or None, an int");
        return NULL;
    }
    Py_ssize_t key_length = PyBytes_GET_SIZE(args[0]);
    PyObject *call_id = args[1], *from_tag = args[2];
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(call_id) < 0 || (from_tag != Py_None && PyUnicode_READY(from_tag) < 0))
        return NULL;
#endif
    if (key_length > 32 || !PyUnicode_IS_ASCII(call_id) ||
        (from_tag != Py_None && !PyUnicode_IS_ASCII(from_tag)))
        Py_RETURN_NONE;
    int overflow = 0;
    long long cseq = PyLong_AsLongLongAndOverflow(args[3], &overflow);
    if (overflow)
        Py_RETURN_NONE;
    if (cseq == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t id_length = PyUnicode_GET_LENGTH(call_id);
    Py_ssize_t tag_length = from_tag == Py_None ? 0 : PyUnicode_GET_LENGTH(from_tag);
    if (id_length + tag_length > TAG_INPUT - 32)
        Py_RETURN_NONE;
    uint8_t input[TAG_INPUT + 64];  /* room for the zeros of the last block */
    Py_ssize_t n = 0;
    memcpy(input, PyUnicode_1BYTE_DATA(call_id), (size_t)id_length);
    n += id_length;
    input[n++] = 0;
    if (tag_length)
        memcpy(input + n, PyUnicode_1BYTE_DATA(from_tag), (size_t)tag_length);
    n += tag_length;
    input[n++] = 0;
    n += snprintf((char *)input + n, 24, "%lld", cseq);

    const char *key = PyBytes_AS_STRING(args[0]);
    if (key_length != keyed_length || memcmp(key, keyed_secret, (size_t)key_length) != 0) {
        /* RFC 7693 §2.5 and §3.3: the parameter block's first word (digest 8 bytes, the
           key's length, fanout 1, depth 1), then the key zero-padded as the first block. */
        uint8_t block[64] = {0};
        for (int i = 0; i < 8; i++)
            keyed_state[i] = blake2s_iv[i];
        keyed_state[0] ^= 0x01010000u ^ ((uint32_t)key_length << 8) ^ 8u;
        if (key_length) {
            memcpy(block, key, (size_t)key_length);
            blake2s_compress(keyed_state, block, 64, 0);
        }
        memcpy(keyed_secret, key, (size_t)key_length);
        keyed_length = key_length;
    }
    uint32_t h[8];
    memcpy(h, keyed_state, sizeof h);
    uint32_t t = key_length ? 64 : 0;
    Py_ssize_t at = 0;
    while (n - at > 64) {  /* every block but the last */
        t += 64;
        blake2s_compress(h, input + at, t, 0);
        at += 64;
    }
    memset(input + n, 0, (size_t)(64 - (n - at)));
    t += (uint32_t)(n - at);
    blake2s_compress(h, input + at, t, 1);
    static const char hex[] = "0123456789abcdef";
    PyObject *out = PyUnicode_New(16, 127);
    if (out == NULL)
        return NULL;
    Py_UCS1 *o = PyUnicode_1BYTE_DATA(out);
    for (int i = 0; i < 8; i++) {
        uint8_t byte = (uint8_t)(h[i / 4] >> (8 * (i % 4)));
        o[2 * i] = (Py_UCS1)hex[byte >> 4];
        o[2 * i + 1] = (Py_UCS1)hex[byte & 15];
    }
    return out;
}

/* What str.strip() strips from an ASCII text: its whitespace, \x1c-\x1f included. */
static int
is_space(Py_UCS1 c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* The one argument of via_params, party and request_line: 1 for an ASCII str, 0 for
   any other str (the Python function reads it), -1 with TypeError for anything else. */
static int
one_ascii_str(PyObject *const *args, Py_ssize_t nargs, const char *error)
{
    if (nargs != 1 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, error);
        return -1;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(args[0]) < 0)
        return -1;
#endif
    return PyUnicode_IS_ASCII(args[0]) ? 1 : 0;
}

/* via_params(raw) -> (params, flaw) | None

   ``message._via_params`` for an ASCII ``raw`` (None for any other: the Python function
   reads it): ``;name=value;name`` -> [(name in lower case, value or None)], and
   "Empty Via Parameter" when a name is empty once stripped (else None). */
static PyObject *
via_params(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int ascii = one_ascii_str(args, nargs, "via_params takes a str");
    if (ascii <= 0) {
        if (ascii < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *raw = args[0];
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(raw);
    Py_ssize_t length = PyUnicode_GET_LENGTH(raw);
    PyObject *params = PyList_New(0);
    if (params == NULL)
        return NULL;
    int empty_name = 0;
    /* raw[1:].split(";"): each item up to the next ";" or the end. */
    for (Py_ssize_t at = length ? 1 : length + 1; at <= length;) {
        const Py_UCS1 *semi = memchr(s + at, ';', (size_t)(length - at));
        Py_ssize_t end = semi == NULL ? length : semi - s;
        const Py_UCS1 *eq = memchr(s + at, '=', (size_t)(end - at));
        Py_ssize_t name_end = eq == NULL ? end : eq - s;
        Py_ssize_t a = at, b = name_end;
        while (a < b && is_space(s[a]))
            a++;
        while (b > a && is_space(s[b - 1]))
            b--;
        if (a == b)
            empty_name = 1;
        else {
            PyObject *name = PyUnicode_New(b - a, 127);
            if (name == NULL)
                goto error;
            Py_UCS1 *n = PyUnicode_1BYTE_DATA(name);
            for (Py_ssize_t i = a; i < b; i++)
                n[i - a] = (s[i] >= 'A' && s[i] <= 'Z') ? (Py_UCS1)(s[i] + 32) : s[i];
            PyObject *value;
            if (eq == NULL) {
                value = Py_None;
                Py_INCREF(value);
            }
            else {
                Py_ssize_t c = name_end + 1, d = end;
                while (c < d && is_space(s[c]))
                    c++;
                while (d > c && is_space(s[d - 1]))
                    d--;
                value = PyUnicode_Substring(raw, c, d);
                if (value == NULL) {
                    Py_DECREF(name);
                    goto error;
                }
            }
            PyObject *pair = PyTuple_New(2);
            if (pair == NULL) {
                Py_DECREF(name);
                Py_DECREF(value);
                goto error;
            }
            PyTuple_SET_ITEM(pair, 0, name);
            PyTuple_SET_ITEM(pair, 1, value);
            int failed = PyList_Append(params, pair);
            Py_DECREF(pair);
            if (failed)
                goto error;
        }
        at = end + 1;
    }
    PyObject *flaw = empty_name ? PyUnicode_FromString("Empty Via Parameter") : Py_None;
    if (flaw == NULL)
        goto error;
    if (!empty_name)
        Py_INCREF(flaw);
    PyObject *result = PyTuple_New(2);
    if (result == NULL) {
        Py_DECREF(flaw);
        goto error;
    }
    PyTuple_SET_ITEM(result, 0, params);
    PyTuple_SET_ITEM(result, 1, flaw);
    return result;
error:
    Py_DECREF(params);
    return NULL;
}

/* grammar.TOKEN_CHARS: letters, digits and .!%*_+`'~- */
static int
is_token(Py_UCS1 c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr(".!%*_+`'~-", c) != NULL);
}

/* party(value) -> (well_formed, tag) | None

   ``parser._party``'s two readings of a From or To value in the usual spelling:
   ``uri.check_name_addr(value)`` and ``message.tag_of(value)``.  None — the Python
   functions decide — for text that is not ASCII, and where ``tag_of`` would go on to its
   patterns: a ``;tag=`` whose value is not all token characters, or no ``;tag=`` but
   "tag" in some other case or spelling among the parameters. */
static PyObject *
party(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int ascii = one_ascii_str(args, nargs, "party takes a str");
    if (ascii <= 0) {
        if (ascii < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *value = args[0];
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    /* check_name_addr: a ":" inside the first <...>, or anywhere without one. */
    int well_formed;
    const Py_UCS1 *lt = memchr(s, '<', (size_t)n);
    if (lt != NULL) {
        Py_ssize_t start = lt - s;
        const Py_UCS1 *gt = memchr(s + start, '>', (size_t)(n - start));
        Py_ssize_t end = gt == NULL ? -1 : gt - s;
        well_formed = end > start + 1 && memchr(s + start, ':', (size_t)(end - start)) != NULL;
    }
    else
        well_formed = memchr(s, ':', (size_t)n) != NULL;
    /* tag_of: ";tag=" after the last ">" (or anywhere without one). */
    Py_ssize_t close = n - 1;
    while (close >= 0 && s[close] != '>')
        close--;
    Py_ssize_t at = -1;
    for (Py_ssize_t i = close + 1; i + 5 <= n; i++) {
        if (s[i] == ';' && memcmp(s + i, ";tag=", 5) == 0) {
            at = i;
            break;
        }
    }
    PyObject *tag;
    if (at >= 0) {
        Py_ssize_t i = at + 5;
        if (i == n)
            Py_RETURN_NONE;  /* an empty tag: the patterns decide */
        for (; i < n; i++)
            if (!is_token(s[i]))
                Py_RETURN_NONE;
        tag = PyUnicode_Substring(value, at + 5, n);
        if (tag == NULL)
            return NULL;
    }
    else {
        for (Py_ssize_t i = close + 1; i + 3 <= n; i++) {
            if ((s[i] | 32) == 't' && (s[i + 1] | 32) == 'a' && (s[i + 2] | 32) == 'g')
                Py_RETURN_NONE;  /* "tag" spelled some other way: the patterns decide */
        }
        tag = Py_None;
        Py_INCREF(tag);
    }
    PyObject *result = PyTuple_New(2);
    if (result == NULL) {
        Py_DECREF(tag);
        return NULL;
    }
    PyObject *flag = well_formed ? Py_True : Py_False;
    Py_INCREF(flag);
    PyTuple_SET_ITEM(result, 0, flag);
    PyTuple_SET_ITEM(result, 1, tag);
    return result;
}

/* request_line(line) -> (method, uri, version) | None

   ``parser._request_line`` for a line it finds nothing wrong with: three parts between
   single spaces, none empty, the method all token characters and the Request-URI not
   in angle brackets, with at most two colons (a scheme's and a port's: a URI with more
   may hold an IPv6 host without its brackets, which the Python function looks into).
   None for any other line, and for text that is not ASCII: the Python function reads
   it and notes what is wrong. */
static PyObject *
request_line(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int ascii = one_ascii_str(args, nargs, "request_line takes a str");
    if (ascii <= 0) {
        if (ascii < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *line = args[0];
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(line);
    Py_ssize_t n = PyUnicode_GET_LENGTH(line);
    const Py_UCS1 *sp1 = memchr(s, ' ', (size_t)n);
    if (sp1 == NULL)
        Py_RETURN_NONE;
    Py_ssize_t a = sp1 - s;  /* the method is s[0:a] */
    const Py_UCS1 *sp2 = memchr(s + a + 1, ' ', (size_t)(n - a - 1));
    if (sp2 == NULL)
        Py_RETURN_NONE;
    Py_ssize_t b = sp2 - s;  /* the URI is s[a + 1:b], the version s[b + 1:] */
    if (a == 0 || b == a + 1 || b + 1 == n || s[a + 1] == '<' ||
        memchr(s + b + 1, ' ', (size_t)(n - b - 1)) != NULL)
        Py_RETURN_NONE;
    for (Py_ssize_t i = 0; i < a; i++)
        if (!is_token(s[i]))
            Py_RETURN_NONE;
    const Py_UCS1 *colon = s + a;  /* a third colon in the URI: left to Python */
    for (int k = 0; k < 3; k++) {
        colon = memchr(colon + 1, ':', (size_t)(sp2 - colon - 1));
        if (colon == NULL)
            break;
        if (k == 2)
            Py_RETURN_NONE;
    }
    PyObject *method = PyUnicode_Substring(line, 0, a);
    PyObject *uri = method == NULL ? NULL : PyUnicode_Substring(line, a + 1, b);
    PyObject *version = uri == NULL ? NULL : PyUnicode_Substring(line, b + 1, n);
    if (version == NULL) {
        Py_XDECREF(method);
        Py_XDECREF(uri);
        return NULL;
    }
    PyObject *result = PyTuple_New(3);
    if (result == NULL) {
        Py_DECREF(method);
        Py_DECREF(uri);
        Py_DECREF(version);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, method);
    PyTuple_SET_ITEM(result, 1, uri);
    PyTuple_SET_ITEM(result, 2, version);
    return result;
}

static PyMethodDef methods[] = {
    {"usual_headers", (PyCFunction)(void (*)(void))usual_headers, METH_FASTCALL,
     "The parser's _usual_headers for an ASCII text (-2 for any other)."},
    {"decimal", (PyCFunction)(void (*)(void))decimal, METH_FASTCALL,
     "message.decimal: text as a number when it is 1 to digits ASCII digits, else None."},
    {"frame_head", (PyCFunction)(void (*)(void))frame_head, METH_FASTCALL,
     "framer._frame_head: the length of the message at buf[pos], or a FRAME_ code."},
    {"via_params", (PyCFunction)(void (*)(void))via_params, METH_FASTCALL,
     "message._via_params for an ASCII text (else None)."},
    {"request_line", (PyCFunction)(void (*)(void))request_line, METH_FASTCALL,
     "parser._request_line for a line with nothing wrong in it (else None)."},
    {"party", (PyCFunction)(void (*)(void))party, METH_FASTCALL,
     "parser._party's check_name_addr and tag_of, in the usual spelling (else None)."},
    {"to_tag", (PyCFunction)(void (*)(void))to_tag, METH_FASTCALL,
     "responses.make_to_tag for an ASCII input and a key BLAKE2s takes (else None)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sipresponder.sip._c.headers",
    "Loops of the per-message path in C: headers, Via, From/To, numbers, framing, To tags.",
    -1, methods,
};

PyMODINIT_FUNC
PyInit_headers(void)
{
    return PyModule_Create(&module);
}
