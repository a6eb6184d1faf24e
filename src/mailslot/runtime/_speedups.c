/* The runtime's hot path in C: a local tell, and the inner loop of an actor's turn.
 *
 * mailslot.runtime works without this module: core.py's pure-Python twins (_PyRefCore,
 * _PyCellCore, _PySystemCore) are the reference, and the runtime's tests run against both.
 * Only the standard library's C API is used. Everything that is not the hot path stays in
 * Python and is called from here: a tell that cannot take the fast path (_Cell.tell_careful),
 * scheduling the dispatcher (ActorSystem._schedule_drain), a coroutine handler
 * (_Cell.start_handler_task).
 *
 * SystemCore holds what every tell reads from the actor system (the current sender, the ready
 * queue); CellCore holds an actor's mailbox and what its turn touches; RefCore is the base of
 * every ActorRef and holds a local ref's cell. Python subclasses (ActorSystem, _Cell, ActorRef)
 * add the rest. Every function here runs with the GIL held, like the Python code it replaces.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *current; /* the ref of the actor being run, or NULL */
    PyObject *ready;   /* deque of scheduled cells */
    PyObject *drain_pending; /* a bool */
} SystemCore;

typedef struct {
    PyObject_HEAD
    PyObject *system;  /* a SystemCore */
    PyObject *queue;   /* the mailbox: a deque of (message, meta), or a CoalescingQueue */
    PyObject *receive; /* the actor's bound receive */
    PyObject *meta;    /* the sender or envelope of the message being handled */
    PyObject *sysq;    /* control work: a deque, or NULL */
    PyObject *turn_message; /* after a failed turn: the message being handled */
    PyObject *gate;    /* an int: a tell takes the fast path while the mailbox holds fewer */
    PyObject *turn_done; /* an int, after a failed turn: the messages it took, the failed one too */
    PyObject *scheduled; /* a bool */
} CellCore;

typedef struct {
    PyObject_HEAD
    PyObject *cell; /* a CellCore */
} RefCore;

static PyTypeObject SystemCoreType;
static PyTypeObject CellCoreType;
static PyTypeObject RefCoreType;

static PyTypeObject *deque_type;
static PyCFunction deque_append; /* deque.append's C function (METH_O) */
static PyCFunction deque_popleft; /* deque.popleft's C function (METH_NOARGS) */
static PyObject *str_append, *str_popleft, *str_tell_careful, *str_schedule_drain,
    *str_start_handler_task, *str_sender;

/* ---- deques ------------------------------------------------------------------------------- */

static int
push(PyObject *q, PyObject *item)
{
    PyObject *r = Py_IS_TYPE(q, deque_type) ? deque_append(q, item)
                                            : PyObject_CallMethodOneArg(q, str_append, item);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static PyObject *
pop(PyObject *q)
{
    return Py_IS_TYPE(q, deque_type) ? deque_popleft(q, NULL)
                                     : PyObject_CallMethodNoArgs(q, str_popleft);
}

static Py_ssize_t
length(PyObject *q)
{
    return Py_IS_TYPE(q, deque_type) ? Py_SIZE(q) : PyObject_Length(q);
}

/* The truth of a flag (a bool, or missing: false). */
static int
truth(PyObject *flag)
{
    if (flag == Py_True) {
        return 1;
    }
    if (flag == Py_False || flag == NULL) {
        return 0;
    }
    return PyObject_IsTrue(flag);
}

/* Find a method's C function on collections.deque, checking its calling convention. */
static PyCFunction
deque_method(const char *name, int flags)
{
    PyObject *d = PyObject_GetAttrString((PyObject *)deque_type, name);
    if (d == NULL) {
        return NULL;
    }
    PyCFunction f = NULL;
    if (Py_IS_TYPE(d, &PyMethodDescr_Type) &&
        ((PyMethodDescrObject *)d)->d_method->ml_flags == flags) {
        f = ((PyMethodDescrObject *)d)->d_method->ml_meth;
    }
    else {
        PyErr_Format(PyExc_ImportError, "collections.deque.%s is not the expected C method", name);
    }
    Py_DECREF(d);
    return f;
}

/* ---- SystemCore --------------------------------------------------------------------------- */

static int
SystemCore_traverse(SystemCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->current);
    Py_VISIT(self->ready);
    Py_VISIT(self->drain_pending);
    return 0;
}

static int
SystemCore_clear(SystemCore *self)
{
    Py_CLEAR(self->current);
    Py_CLEAR(self->ready);
    Py_CLEAR(self->drain_pending);
    return 0;
}

static void
SystemCore_dealloc(SystemCore *self)
{
    PyObject_GC_UnTrack(self);
    SystemCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Every member is T_OBJECT_EX, like a __slots__ entry, so that the interpreter specialises the
 * Python code's reads and writes of them as it does for slots. Their types are checked where the
 * hot path relies on them. */
static PyMemberDef SystemCore_members[] = {
    {"_current", T_OBJECT_EX, offsetof(SystemCore, current), 0, NULL},
    {"_ready", T_OBJECT_EX, offsetof(SystemCore, ready), 0, NULL},
    {"_drain_pending", T_OBJECT_EX, offsetof(SystemCore, drain_pending), 0, NULL},
    {NULL},
};

static PyTypeObject SystemCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mailslot.runtime._speedups.SystemCore",
    .tp_basicsize = sizeof(SystemCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "What every tell reads from an actor system.",
    .tp_new = PyType_GenericNew,
    .tp_traverse = (traverseproc)SystemCore_traverse,
    .tp_clear = (inquiry)SystemCore_clear,
    .tp_dealloc = (destructor)SystemCore_dealloc,
    .tp_members = SystemCore_members,
};

/* ---- CellCore ----------------------------------------------------------------------------- */

static int
CellCore_traverse(CellCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->system);
    Py_VISIT(self->queue);
    Py_VISIT(self->receive);
    Py_VISIT(self->meta);
    Py_VISIT(self->sysq);
    Py_VISIT(self->turn_message);
    Py_VISIT(self->gate);
    Py_VISIT(self->turn_done);
    Py_VISIT(self->scheduled);
    return 0;
}

static int
CellCore_clear(CellCore *self)
{
    Py_CLEAR(self->system);
    Py_CLEAR(self->queue);
    Py_CLEAR(self->receive);
    Py_CLEAR(self->meta);
    Py_CLEAR(self->sysq);
    Py_CLEAR(self->turn_message);
    Py_CLEAR(self->gate);
    Py_CLEAR(self->turn_done);
    Py_CLEAR(self->scheduled);
    return 0;
}

static void
CellCore_dealloc(CellCore *self)
{
    PyObject_GC_UnTrack(self);
    CellCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* One turn's messages, up to ``limit``: the loop of _PyCellCore.turn (see there). */
static PyObject *
CellCore_turn(CellCore *self, PyObject *arg)
{
    Py_ssize_t limit = PyLong_AsSsize_t(arg);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (self->queue == NULL || self->receive == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a cell's turn before its queue and receive are set");
        return NULL;
    }
    PyObject *q = Py_NewRef(self->queue);
    PyObject *recv = Py_NewRef(self->receive);
    PyObject *func = PyMethod_Check(recv) ? PyMethod_GET_FUNCTION(recv) : NULL;
    PyObject *actor = PyMethod_Check(recv) ? PyMethod_GET_SELF(recv) : NULL; /* recv holds both */
    PyObject *message = NULL;
    Py_ssize_t done = 0;
    for (Py_ssize_t i = 1; i <= limit; i++) {
        done = i;
        PyObject *item = pop(q);
        if (item == NULL) {
            goto fail;
        }
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2) {
            Py_DECREF(item);
            PyErr_SetString(PyExc_TypeError, "a mailbox entry is not a (message, meta) pair");
            goto fail;
        }
        Py_XSETREF(message, Py_NewRef(PyTuple_GET_ITEM(item, 0)));
        Py_XSETREF(self->meta, Py_NewRef(PyTuple_GET_ITEM(item, 1)));
        Py_DECREF(item);
        PyObject *r;
        if (func != NULL) { /* a bound method: call its function with its self, no rebinding */
            PyObject *call[2] = {actor, message};
            r = PyObject_Vectorcall(func, call, 2, NULL);
        }
        else {
            r = PyObject_Vectorcall(recv, &message, 1, NULL);
        }
        if (r == NULL) {
            goto fail;
        }
        if (r != Py_None) {
            PyObject *t =
                PyObject_CallMethodObjArgs((PyObject *)self, str_start_handler_task, r, message, NULL);
            Py_DECREF(r);
            if (t == NULL) {
                goto fail;
            }
            Py_DECREF(t);
            break;
        }
        Py_DECREF(r);
        PyObject *sysq = self->sysq;
        if (sysq != NULL && sysq != Py_None) { /* control work ends the turn early */
            Py_ssize_t n = length(sysq);
            if (n < 0) {
                goto fail;
            }
            if (n > 0) {
                break;
            }
        }
    }
    Py_XDECREF(message);
    Py_DECREF(q);
    Py_DECREF(recv);
    return PyLong_FromSsize_t(done);
fail:
    Py_XSETREF(self->turn_message, message != NULL ? message : Py_NewRef(Py_None)); /* moves */
    {
        PyObject *exc_type, *exc, *tb;
        PyErr_Fetch(&exc_type, &exc, &tb); /* PyLong_FromSsize_t must not run with one set */
        PyObject *n = PyLong_FromSsize_t(done);
        if (n == NULL) {
            Py_XDECREF(exc_type);
            Py_XDECREF(exc);
            Py_XDECREF(tb);
            Py_DECREF(q);
            Py_DECREF(recv);
            return NULL;
        }
        Py_XSETREF(self->turn_done, n);
        PyErr_Restore(exc_type, exc, tb);
    }
    Py_DECREF(q);
    Py_DECREF(recv);
    return NULL;
}

static PyMethodDef CellCore_methods[] = {
    {"turn", (PyCFunction)CellCore_turn, METH_O,
     "Handle up to limit messages; the number taken. On an error, turn_done and turn_message "
     "say how far it got."},
    {NULL},
};

static PyMemberDef CellCore_members[] = {
    {"system", T_OBJECT_EX, offsetof(CellCore, system), 0, NULL},
    {"queue", T_OBJECT_EX, offsetof(CellCore, queue), 0, NULL},
    {"receive", T_OBJECT_EX, offsetof(CellCore, receive), 0, NULL},
    {"meta", T_OBJECT_EX, offsetof(CellCore, meta), 0, NULL},
    {"sysq", T_OBJECT_EX, offsetof(CellCore, sysq), 0, NULL},
    {"turn_message", T_OBJECT_EX, offsetof(CellCore, turn_message), 0, NULL},
    {"gate", T_OBJECT_EX, offsetof(CellCore, gate), 0, NULL},
    {"turn_done", T_OBJECT_EX, offsetof(CellCore, turn_done), 0, NULL},
    {"scheduled", T_OBJECT_EX, offsetof(CellCore, scheduled), 0, NULL},
    {NULL},
};

static PyTypeObject CellCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mailslot.runtime._speedups.CellCore",
    .tp_basicsize = sizeof(CellCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "An actor's mailbox and what its turn touches.",
    .tp_new = PyType_GenericNew,
    .tp_traverse = (traverseproc)CellCore_traverse,
    .tp_clear = (inquiry)CellCore_clear,
    .tp_dealloc = (destructor)CellCore_dealloc,
    .tp_methods = CellCore_methods,
    .tp_members = CellCore_members,
};

/* ---- RefCore ------------------------------------------------------------------------------ */

static int
RefCore_traverse(RefCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->cell);
    return 0;
}

static int
RefCore_clear(RefCore *self)
{
    Py_CLEAR(self->cell);
    return 0;
}

static void
RefCore_dealloc(RefCore *self)
{
    PyObject_GC_UnTrack(self);
    RefCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* LocalActorRef.tell: the twin of the pure-Python LocalActorRef.tell in core.py. */
static PyObject *
RefCore_tell(RefCore *self, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *sender = Py_None;
    if (nargs < 1 || nargs + nkw > 2 ||
        (nkw == 1 && PyUnicode_Compare(PyTuple_GET_ITEM(kwnames, 0), str_sender) != 0)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "tell(message, sender=None)");
        }
        return NULL;
    }
    PyObject *message = args[0];
    if (nargs + nkw == 2) {
        sender = args[1];
    }
    PyObject *cell = self->cell;
    if (cell == NULL || !PyObject_TypeCheck(cell, &CellCoreType)) {
        PyErr_SetString(PyExc_TypeError, "tell on a ref whose _cell is not a _Cell");
        return NULL;
    }
    CellCore *c = (CellCore *)cell;
    if (c->system == NULL || !PyObject_TypeCheck(c->system, &SystemCoreType) || c->queue == NULL ||
        c->gate == NULL) {
        PyErr_SetString(PyExc_TypeError, "tell to a cell without its system, queue or gate");
        return NULL;
    }
    PyObject *q = c->queue;
    Py_ssize_t n = length(q);
    if (n < 0) {
        return NULL;
    }
    Py_ssize_t gate = PyLong_AsSsize_t(c->gate);
    if (gate == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n >= gate) {
        return PyObject_CallMethodObjArgs(cell, str_tell_careful, message, sender, Py_False, NULL);
    }
    SystemCore *s = (SystemCore *)c->system;
    if (sender == Py_None && s->current != NULL) {
        sender = s->current;
    }
    PyObject *item = PyTuple_Pack(2, message, sender);
    if (item == NULL) {
        return NULL;
    }
    int failed = push(q, item);
    Py_DECREF(item);
    if (failed) {
        return NULL;
    }
    int scheduled = truth(c->scheduled);
    if (scheduled < 0) {
        return NULL;
    }
    if (!scheduled) { /* becomes ready: the twin of ActorSystem._make_ready */
        if (s->ready == NULL) {
            PyErr_SetString(PyExc_TypeError, "an actor system without its ready queue");
            return NULL;
        }
        Py_XSETREF(c->scheduled, Py_NewRef(Py_True));
        if (push(s->ready, cell) < 0) {
            return NULL;
        }
        int pending = truth(s->drain_pending);
        if (pending < 0) {
            return NULL;
        }
        if (!pending) {
            return PyObject_CallMethodNoArgs((PyObject *)s, str_schedule_drain);
        }
    }
    Py_RETURN_NONE;
}

static PyMemberDef RefCore_members[] = {
    {"_cell", T_OBJECT_EX, offsetof(RefCore, cell), 0, NULL},
    {NULL},
};

static PyMethodDef RefCore_methods[] = {
    {"_tell_local", (PyCFunction)(void (*)(void))RefCore_tell, METH_FASTCALL | METH_KEYWORDS,
     "LocalActorRef.tell in C."},
    {NULL},
};

static PyTypeObject RefCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mailslot.runtime._speedups.RefCore",
    .tp_basicsize = sizeof(RefCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The base of every ActorRef: a local ref's cell.",
    .tp_new = PyType_GenericNew,
    .tp_traverse = (traverseproc)RefCore_traverse,
    .tp_clear = (inquiry)RefCore_clear,
    .tp_dealloc = (destructor)RefCore_dealloc,
    .tp_methods = RefCore_methods,
    .tp_members = RefCore_members,
};

/* ---- module ------------------------------------------------------------------------------- */

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mailslot.runtime._speedups",
    .m_doc = "The hot path of mailslot.runtime (optional; see core.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&SystemCoreType) < 0 || PyType_Ready(&CellCoreType) < 0 ||
        PyType_Ready(&RefCoreType) < 0) {
        return NULL;
    }
    PyObject *collections = PyImport_ImportModule("collections");
    if (collections == NULL) {
        return NULL;
    }
    deque_type = (PyTypeObject *)PyObject_GetAttrString(collections, "deque");
    Py_DECREF(collections);
    if (deque_type == NULL) {
        return NULL;
    }
    deque_append = deque_method("append", METH_O);
    deque_popleft = deque_method("popleft", METH_NOARGS);
    if (deque_append == NULL || deque_popleft == NULL) {
        return NULL;
    }
    str_append = PyUnicode_InternFromString("append");
    str_popleft = PyUnicode_InternFromString("popleft");
    str_tell_careful = PyUnicode_InternFromString("tell_careful");
    str_schedule_drain = PyUnicode_InternFromString("_schedule_drain");
    str_start_handler_task = PyUnicode_InternFromString("start_handler_task");
    str_sender = PyUnicode_InternFromString("sender");
    if (!str_append || !str_popleft || !str_tell_careful || !str_schedule_drain ||
        !str_start_handler_task || !str_sender) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&speedups_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "SystemCore", (PyObject *)&SystemCoreType) < 0 ||
        PyModule_AddObjectRef(m, "CellCore", (PyObject *)&CellCoreType) < 0 ||
        PyModule_AddObjectRef(m, "RefCore", (PyObject *)&RefCoreType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
