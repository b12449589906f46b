/* The TCP framer's head scan in C, loaded through ``sip/_speedups.py``.

   ``frame_head`` does what ``sipresponder/sip/framer.py``'s ``_py_frame_head`` does, on the
   same arguments, with the same result: the length of the message at the head of a
   stream's buffer, from its header section's end and its Content-Length lines (the
   Python function's regex, set and method calls took a ninth of an OPTIONS over TCP).
   The Python function stays the definition: the pure-Python core runs it, and property
   tests feed both the same bytes and compare the results (tests/unit/test_speedups.py).

   Only the buffer given is read, and every index stays within [pos, size), which is
   checked against the buffer's length before anything is read.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

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

   ``framer._py_frame_head``: the length of the message at buf[pos] from the end of its
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
    {"frame_head", (PyCFunction)(void (*)(void))frame_head, METH_FASTCALL,
     "framer._py_frame_head: the length of the message at buf[pos], or a FRAME_ code."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sipresponder.sip._c.framer",
    "The TCP framer's head scan in C: the length of the message at the head of a buffer.",
    -1, methods,
};

PyMODINIT_FUNC
PyInit_framer(void)
{
    return PyModule_Create(&module);
}
