/* Three loops of the per-message path in C, loaded through ``message.c_function``.

   ``usual_headers`` does what ``sipresponder/parser.py``'s ``_usual_headers`` does, on
   the same arguments, with the same result: it is that function's loop without the
   interpreter's cost per line (about a third of the parse of a request, compiled by
   mypyc, went to the loop's string searches, slices and lookups).  ``decimal`` does what
   ``message._decimal`` does, and ``frame_head`` what ``parser._frame_head`` does (the TCP
   framer's regex, set and method calls took a ninth of an OPTIONS over TCP).  The
   Python functions stay the definitions: the pure-Python core runs them, and property
   tests feed both the same input and compare everything they return and fill in
   (tests/unit/test_scan.py).

   Only a text of ASCII characters is scanned by ``usual_headers`` (the usual request);
   for any other the result is -2 and the caller runs the Python function.  Nothing is
   written outside the two containers it is given, and every index stays within
   [pos, end), which is checked against the text's length before anything is read.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* Names as spelled -> their key: a small cache of ``keys`` (the parser's ``_KEYS``) that
   needs no string object to look a name up.  ``_KEYS`` only ever gains names, and a
   name's key is a function of the name (``_header_key``), so an entry never goes stale;
   a full slot is simply overwritten.  Each entry holds a reference to its key. */
#define CACHE_SLOTS 256  /* a power of two */
#define CACHE_PROBES 4
#define CACHE_NAME 32    /* longer names are looked up in the dict every time */

typedef struct {
    Py_ssize_t length;  /* 0: empty */
    char name[CACHE_NAME];
    PyObject *key;
} cached_name;

static cached_name cache[CACHE_SLOTS];  /* process-wide: the GIL guards it */

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

/* The framer's codes (parser.FRAME_*). */
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

   ``parser._frame_head``: the length of the message at buf[pos] from the end of its
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

static PyMethodDef methods[] = {
    {"usual_headers", (PyCFunction)(void (*)(void))usual_headers, METH_FASTCALL,
     "The parser's _usual_headers for an ASCII text (-2 for any other)."},
    {"decimal", (PyCFunction)(void (*)(void))decimal, METH_FASTCALL,
     "message.decimal: text as a number when it is 1 to digits ASCII digits, else None."},
    {"frame_head", (PyCFunction)(void (*)(void))frame_head, METH_FASTCALL,
     "parser._frame_head: the length of the message at buf[pos], or a FRAME_ code."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sipresponder._scan",
    "Three loops of the per-message path in C: the header scanner, decimal, the framer.",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__scan(void)
{
    return PyModule_Create(&module);
}
