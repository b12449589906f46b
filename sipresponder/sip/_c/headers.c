/* The parser's loops in C, loaded through ``sip/_speedups.py``: the header scanner and the
   readers of the request line, Via parameters, From/To and numbers.

   ``usual_headers`` does what ``sipresponder/sip/parser.py``'s ``_py_usual_headers`` does,
   on the same arguments, with the same result: it is that function's loop without the
   interpreter's cost per line (about a third of the parse of a request, compiled by
   mypyc, went to the loop's string searches, slices and lookups).  ``decimal`` does what
   ``message._py_decimal`` does, ``via_params`` what ``message._py_via_params`` does
   (3.6k instructions a Via), ``party`` what ``parser._py_party`` (``uri.check_name_addr``
   and ``message.tag_of``) does for a From or To in the usual spelling, and
   ``request_line`` what ``parser._py_request_line`` does for a line with nothing wrong in
   it.  The Python functions stay the definitions: the pure-Python core runs them, and
   property tests feed both the same input and compare everything they return and fill in
   (tests/unit/test_speedups.py).

   Only a text of ASCII characters is scanned by ``usual_headers`` (the usual request);
   for any other the result is -2 and the caller runs the Python function.  Nothing is
   written outside the two containers it is given, and every index stays within
   [pos, end), which is checked against the text's length before anything is read.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
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

   ``message._py_decimal``: ``text`` as a number when it is 1 to ``digits`` ASCII digits, else
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

   ``message._py_via_params`` for an ASCII ``raw`` (None for any other: the Python function
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

   ``parser._py_party``'s two readings of a From or To value in the usual spelling:
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

   ``parser._py_request_line`` for a line it finds nothing wrong with: three parts between
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
     "parser._py_usual_headers for an ASCII text (-2 for any other)."},
    {"decimal", (PyCFunction)(void (*)(void))decimal, METH_FASTCALL,
     "message._py_decimal: text as a number when it is 1 to digits ASCII digits, else None."},
    {"via_params", (PyCFunction)(void (*)(void))via_params, METH_FASTCALL,
     "message._py_via_params for an ASCII text (else None)."},
    {"request_line", (PyCFunction)(void (*)(void))request_line, METH_FASTCALL,
     "parser._py_request_line for a line with nothing wrong in it (else None)."},
    {"party", (PyCFunction)(void (*)(void))party, METH_FASTCALL,
     "parser._py_party: check_name_addr and tag_of, in the usual spelling (else None)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sipresponder.sip._c.headers",
    "The parser's loops in C: header lines, request line, Via, From/To, numbers.",
    -1, methods,
};

PyMODINIT_FUNC
PyInit_headers(void)
{
    return PyModule_Create(&module);
}
