#!/usr/bin/python3
"""A dbus-daemon XML configuration translated into dbus-broker's policy, as
`dbus-broker-launch` translates it; `dbus-broker-bus.py --config FILE` uses it.

    dbus_broker_policy.py FILE     prints the policy it makes of FILE (to read by eye)

dbus-broker reads no configuration: its launcher parses the busconfig XML and hands the
broker one policy value (`AddListener`'s variant, of type POLICY_TYPE below). This module
does what the launcher does, following bus1/dbus-broker at d48e5d5: src/launch/config.c
(which elements and attributes mean what, how <include> and <includedir> resolve),
src/launch/policy.c (how rules become records, their priorities, the export), read
against src/bus/policy.c (how the broker decides with them). What the launcher accepts
and this module does not translate, it refuses (ConfigError), rather than run a bus
whose policy silently differs from the file's.

How the broker decides, which the shapes below serve: every record has a verdict and a
priority, and of the records that match, the one with the highest priority wins (none:
deny). A connection is judged by one uid batch (its uid's, else the default one, uid
-1) plus the batch of each of its groups. So a uid's batch carries the default context's
records as well as its own, and a group's carries only its own. Priorities put every
<policy context="default"> record below every group one, below every user one, below
every mandatory one, and inside a context the record read later above the earlier: the
dbus-daemon order, whatever the order the <policy> elements are written in.
"""
import grp
import os
import pwd
import sys
import xml.parsers.expat

# The batch every uid and group gets: connect verdict (b, t), own records (btbs), send
# and receive records (btssssuutt: verdict, priority, name, path, interface, member,
# message type, broadcast, min_fds, max_fds).
BATCH_TYPE = "bta(btbs)a(btssssuutt)a(btssssuutt)"
# uid batches, uid-range/gid batches, SELinux name labels, AppArmor on, bus type.
POLICY_TYPE = "(a(u(" + BATCH_TYPE + "))a(buu(" + BATCH_TYPE + "))a(ss)bs)"

UINT32_MAX = (1 << 32) - 1
UINT64_MAX = (1 << 64) - 1

# The launcher's policy contexts (config.h CONFIG_POLICY_*), which weigh the priorities.
# at_console (4) and no_console (5) need the console users from logind: not translated.
DEFAULT, GROUP, USER, MANDATORY = 1, 2, 3, 6
N_CONTEXTS = 7
# The launcher's first priority (POLICY_PRIORITY_DEFAULT), also a batch's "no verdict".
PRIORITY_DEFAULT = 1

MESSAGE_TYPES = {"method_call": 1, "method_return": 2, "error": 3, "signal": 4}
REPLY_TYPES = (2, 3)
# UTIL_TRISTATE_*: unset, yes, no.
TRISTATE = {"true": 1, "false": 2}

SEND_ATTRIBUTES = ("send_interface", "send_member", "send_destination", "send_path", "send_type", "send_broadcast",
                   "send_requested_reply", "send_error")
RECEIVE_ATTRIBUTES = ("receive_interface", "receive_member", "receive_sender", "receive_path", "receive_type",
                      "receive_requested_reply", "receive_error")
# eavesdrop= goes with send and receive rules, and alone makes a receive rule.
RULE_ATTRIBUTES = SEND_ATTRIBUTES + RECEIVE_ATTRIBUTES + ("eavesdrop", "own", "own_prefix", "user", "group", "min_fds",
                                                          "max_fds")


class ConfigError(Exception):
    """Something in the file this translation refuses: where, and why."""

    def __init__(self, node, message):
        super().__init__("%s +%d: %s" % (node.file, node.line, message))


def note(node, message):
    """What the translation did that a reader of the file might not expect (the launcher
    prints the same cases); on stderr, which the bus's runner passes on."""
    print("dbus-broker-bus.py: %s +%d: %s" % (node.file, node.line, message), file=sys.stderr)


class Node:
    """One XML element, with where it was written (for messages)."""

    def __init__(self, tag, attributes, file, line):
        self.tag, self.attributes, self.file, self.line = tag, attributes, file, line
        self.children = []
        self.text = ""


def parse_file(path, origin):
    """The file's root element (expat, as the launcher uses). `origin`: the element that
    included it, for the message when it cannot be read."""
    stack = [Node("", {}, path, 0)]
    parser = xml.parsers.expat.ParserCreate()

    def start(tag, attributes):
        node = Node(tag, attributes, path, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(_tag):
        stack.pop()

    def text(data):
        stack[-1].text += data

    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, text
    try:
        with open(path, "rb") as file:
            parser.ParseFile(file)
    except OSError as error:
        raise ConfigError(origin, "cannot read %s: %s" % (path, error.strerror))
    except xml.parsers.expat.ExpatError as error:
        raise ConfigError(Node("", {}, path, error.lineno), "invalid XML: %s" % error)
    root = stack[0].children[0]
    if root.tag != "busconfig":
        raise ConfigError(root, "the root element is <%s>, not <busconfig>" % root.tag)
    return root


def selinux_enabled():
    """libselinux's is_selinux_enabled(), near enough: selinuxfs is mounted."""
    return os.path.exists("/sys/fs/selinux/enforce")


def apparmor_on(mode, where):
    """The `b` of the policy: the launcher's launcher_apparmor_apply(). "enabled" (its
    default) means on where the kernel has AppArmor with D-Bus mediation, else off."""
    def read(path):
        try:
            with open(path) as file:
                return file.read()
        except FileNotFoundError:
            return ""
    supported = read("/sys/module/apparmor/parameters/enabled").startswith("Y") and all(
        word in read("/sys/kernel/security/apparmor/features/dbus/mask") for word in ("acquire", "send", "receive"))
    if mode == "required" and not supported:
        raise ConfigError(where, "<apparmor mode=\"required\"/>, and this kernel has no AppArmor D-Bus mediation")
    return mode != "disabled" and supported


def lookup_id(kind, name):
    """A user's uid or a group's gid by name (a number stands for itself), None if there
    is none: dbus-daemon and the launcher then apply its rules to no one."""
    try:
        return (pwd.getpwnam(name).pw_uid if kind == "user" else grp.getgrnam(name).gr_gid)
    except KeyError:
        return int(name) if name.isdigit() else None


def only(node, allowed):
    """Refuses any attribute of `node` not in `allowed`."""
    for key in node.attributes:
        if key not in allowed:
            raise ConfigError(node, "<%s %s=...> is not translated for dbus-broker" % (node.tag, key))


class Policy:
    """The records, as the launcher's struct Policy holds them, and their export."""

    def __init__(self):
        self.last_priority = PRIORITY_DEFAULT
        self.default = self.entries()
        self.uids, self.gids = {}, {}
        self.selinux = []
        self.apparmor = "enabled"
        self.apparmor_where = None
        self.bus_type = ""
        # policy_import_connect_self: the controller's own uid may always connect (the
        # launcher's default for it), at the lowest priority any rule has.
        self.uid(os.getuid())["connect"].append((True, self.next_priority(0)))

    @staticmethod
    def entries():
        return {"connect": [], "own": [], "send": [], "receive": []}

    def uid(self, uid):
        return self.uids.setdefault(uid, self.entries())

    def next_priority(self, context):
        """Higher for a later record, and for a weightier context whatever the order."""
        self.last_priority += 1
        return UINT64_MAX // N_CONTEXTS * context + self.last_priority

    def entries_of(self, context):
        """Where a record of `context` ((DEFAULT | GROUP | USER | MANDATORY, id)) goes:
        None for a user or group that does not exist."""
        kind, ident = context
        if kind in (DEFAULT, MANDATORY):
            return self.default
        if ident is None:
            return None
        return self.uid(ident) if kind == USER else self.gids.setdefault(ident, self.entries())

    # -- reading the file --------------------------------------------------------------

    def read(self, path, origin=None, including=()):
        """Every element of the file at `path`, in order, <include>s read where they are."""
        root = parse_file(path, origin or Node("--config", {}, path, 0))
        only(root, ())
        for node in root.children:
            if node.tag == "type":
                only(node, ())
                self.bus_type = node.text.strip()
            elif node.tag == "include":
                only(node, ("ignore_missing", "if_selinux_enabled"))
                if node.attributes.get("if_selinux_enabled") == "yes" and not selinux_enabled():
                    continue
                target = os.path.join(os.path.dirname(path), node.text.strip())
                if os.path.abspath(target) in including + (os.path.abspath(path),):
                    raise ConfigError(node, "recursive inclusion of %s" % target)
                if node.attributes.get("ignore_missing") == "yes" and not os.path.exists(target):
                    continue
                self.read(target, node, including + (os.path.abspath(path),))
            elif node.tag == "includedir":
                only(node, ())
                # The *.conf files in it, sorted; a missing directory is no files.
                directory = os.path.join(os.path.dirname(path), node.text.strip())
                names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
                for name in names:
                    if name.endswith(".conf") and len(name) > len(".conf"):
                        self.read(os.path.join(directory, name), node, including + (os.path.abspath(path),))
            elif node.tag == "policy":
                self.read_policy(node)
            elif node.tag == "selinux":
                only(node, ())
                for associate in node.children:
                    if associate.tag != "associate":
                        raise ConfigError(associate, "<selinux> holds <associate> elements only")
                    only(associate, ("own", "context"))
                    if "own" not in associate.attributes or "context" not in associate.attributes:
                        raise ConfigError(associate, "<associate> needs both own= and context=")
                    self.selinux.append((associate.attributes["own"], associate.attributes["context"]))
            elif node.tag == "apparmor":
                only(node, ("mode",))
                if node.attributes.get("mode", "enabled") not in ("enabled", "disabled", "required"):
                    raise ConfigError(node, "mode=\"%s\" is not enabled, disabled or required" % node.attributes["mode"])
                self.apparmor, self.apparmor_where = node.attributes.get("mode", "enabled"), node
            else:
                # <listen>, <auth>, <user>, <limit>, <pidfile>, <servicedir>... configure
                # the dbus-daemon process, not who may do what: dbus-broker-bus.py makes
                # the socket and the broker's limits itself.
                raise ConfigError(node, "<%s> is not translated for dbus-broker (keep it out of the file given to --config)"
                                  % node.tag)

    def read_policy(self, node):
        only(node, ("user", "group", "context"))
        if len(node.attributes) != 1:
            raise ConfigError(node, "<policy> needs exactly one of user=, group=, context=")
        (key, value), = node.attributes.items()
        if key == "context":
            if value not in ("default", "mandatory"):
                raise ConfigError(node, "context=\"%s\" is not default or mandatory" % value)
            context = (DEFAULT if value == "default" else MANDATORY, None)
        else:
            ident = lookup_id(key, value)
            if ident is None:
                note(node, "no %s %s: its rules apply to no one (as in dbus-daemon and dbus-broker-launch)" % (key, value))
            context = (USER if key == "user" else GROUP, ident)
        for rule in node.children:
            if rule.tag not in ("allow", "deny"):
                raise ConfigError(rule, "<policy> holds <allow> and <deny> only, not <%s>" % rule.tag)
            self.read_rule(rule, context)

    def read_rule(self, rule, context):
        """One <allow> or <deny>, sorted as policy_import() sorts them: by the first of
        user/group (connect), own/own_prefix, a send_ attribute, a receive_ one."""
        only(rule, RULE_ATTRIBUTES)
        attributes = rule.attributes
        for key in ("send_type", "receive_type"):
            if key in attributes and attributes[key] not in MESSAGE_TYPES:
                raise ConfigError(rule, "%s=\"%s\" is not a message type" % (key, attributes[key]))
        for key in ("send_broadcast", "send_requested_reply", "receive_requested_reply", "eavesdrop"):
            if key in attributes and attributes[key] not in TRISTATE:
                raise ConfigError(rule, "%s=\"%s\" is not true or false" % (key, attributes[key]))
        for key in ("min_fds", "max_fds"):
            if key in attributes and not attributes[key].isdigit():
                raise ConfigError(rule, "%s=\"%s\" is not a number" % (key, attributes[key]))
        kinds = [kind for kind, keys in (("connect", ("user", "group")), ("own", ("own", "own_prefix")),
                                         ("send", SEND_ATTRIBUTES), ("receive", RECEIVE_ATTRIBUTES))
                 if any(key in attributes for key in keys)]
        if not kinds and "eavesdrop" in attributes:
            kinds = ["receive"]
        if not kinds:
            raise ConfigError(rule, "<%s/> says nothing to allow or deny" % rule.tag)
        if len(kinds) > 1 or (kinds[0] in ("connect", "own") and {"min_fds", "max_fds", "eavesdrop"} & set(attributes)):
            # The launcher prints "Invalid policy attribute combination" and drops it.
            raise ConfigError(rule, "<%s> combines %s (an invalid policy attribute combination)"
                              % (rule.tag, ", ".join(sorted(attributes))))
        verdict = rule.tag == "allow"
        getattr(self, "read_" + kinds[0])(rule, verdict, context)

    def read_connect(self, rule, verdict, context):
        attributes = rule.attributes
        if len(attributes) != 1:
            raise ConfigError(rule, "a connect rule has one of user= or group=, alone")
        if context[0] in (USER, GROUP):
            raise ConfigError(rule, "a connect rule (user=, group=) in a user or group <policy>")
        (key, value), = attributes.items()
        ident = None if value == "*" else lookup_id(key, value)
        if value != "*" and ident is None:
            note(rule, "no %s %s: the rule applies to no one" % (key, value))
            return
        record = (verdict, self.next_priority(context[0]))
        if value == "*":
            self.default["connect"].append(record)
        else:
            (self.uids if key == "user" else self.gids).setdefault(ident, self.entries())["connect"].append(record)

    def read_own(self, rule, verdict, context):
        attributes = rule.attributes
        if ("own" in attributes) == ("own_prefix" in attributes):
            raise ConfigError(rule, "a rule has own= or own_prefix=, not both")
        priority = self.next_priority(context[0])
        if "own_prefix" in attributes:
            record = (verdict, priority, True, attributes["own_prefix"])
        elif attributes["own"] == "*":
            record = (verdict, priority, True, "")  # the empty prefix: every name
        else:
            record = (verdict, priority, False, attributes["own"])
        entries = self.entries_of(context)
        if entries is not None:
            entries["own"].append(record)

    def read_send(self, rule, verdict, context):
        self.read_xmit(rule, verdict, context, "send", "send_destination")

    def read_receive(self, rule, verdict, context):
        self.read_xmit(rule, verdict, context, "receive", "receive_sender")

    def read_xmit(self, rule, verdict, context, direction, name_key):
        """policy_import_send/recv: a record of the name (destination or sender), path,
        interface, member, type, broadcast and descriptor counts; "*" is any."""
        attributes = rule.attributes
        message_type = MESSAGE_TYPES.get(attributes.get(direction + "_type"), 0)
        if direction + "_error" in attributes and message_type != 3:
            # The launcher keeps no error name: such a rule would match every message.
            raise ConfigError(rule, "%s_error= without %s_type=\"error\" is not translated for dbus-broker"
                              % (direction, direction))
        if message_type in REPLY_TYPES or message_type == 0:
            requested = TRISTATE.get(attributes.get(direction + "_requested_reply"), 0)
            if (not verdict and requested == 1) or (verdict and requested == 2):
                note(rule, "a rule on replies: dbus-broker always delivers expected replies and never unexpected ones")
            if message_type in REPLY_TYPES:
                return  # the broker judges no reply by the policy: the launcher drops these
        if attributes.get("eavesdrop") == "true" and not verdict:
            return  # a deny only while eavesdropping: the broker has no eavesdropping
        priority = self.next_priority(context[0])

        def field(key):
            value = attributes.get(key, "")
            return "" if value == "*" else value

        prefix = "send_" if direction == "send" else "receive_"
        broadcast = TRISTATE.get(attributes.get("send_broadcast"), 0) if direction == "send" else 0
        record = (verdict, priority, field(name_key), field(prefix + "path"), field(prefix + "interface"),
                  field(prefix + "member"), message_type, broadcast, int(attributes.get("min_fds", 0)),
                  int(attributes.get("max_fds", UINT64_MAX)))
        entries = self.entries_of(context)
        if entries is not None:
            entries[direction].append(record)

    # -- the value the broker takes ------------------------------------------------------

    def export(self):
        """policy_optimize() then policy_export(): a tuple of POLICY_TYPE."""
        # A connect decision is one verdict per batch: keep each list's top record, and a
        # uid's or group's only where it outranks the default's.
        top_default = max(self.default["connect"], key=lambda record: record[1], default=None)
        self.default["connect"] = [top_default] if top_default else []
        for nodes in (self.uids, self.gids):
            for ident in list(nodes):
                top = max(nodes[ident]["connect"], key=lambda record: record[1], default=None)
                if top and top_default and top[1] <= top_default[1]:
                    top = None
                nodes[ident]["connect"] = [top] if top else []
                if not any(nodes[ident].values()):
                    del nodes[ident]

        def connect(entries):
            chosen = entries["connect"] or self.default["connect"]
            return chosen[0] if chosen else (False, PRIORITY_DEFAULT)

        def uid_batch(entries):
            # The uid's batch replaces the default one for its connections: both lists.
            return connect(entries) + tuple(self.default[key] + entries[key] for key in ("own", "send", "receive"))

        uids = [(UINT32_MAX, uid_batch(self.entries()))]
        uids += [(uid, uid_batch(self.uids[uid])) for uid in sorted(self.uids)]
        gids = [(True, gid, gid, connect(self.gids[gid]) + tuple(self.gids[gid][key] for key in ("own", "send", "receive")))
                for gid in sorted(self.gids)]
        where = self.apparmor_where or Node("<apparmor>", {}, "(default)", 0)
        return (uids, gids, self.selinux, apparmor_on(self.apparmor, where), self.bus_type)


def translate(path):
    """The dbus-broker policy of the configuration file at `path` (a tuple of
    POLICY_TYPE); ConfigError for what is not translated."""
    policy = Policy()
    policy.read(os.path.abspath(path))
    return policy.export()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: dbus_broker_policy.py FILE")
    try:
        uids, gids, selinux, apparmor, bus_type = translate(sys.argv[1])
    except ConfigError as error:
        sys.exit("dbus_broker_policy.py: %s" % error)
    for uid, batch in uids:
        print("uid %s: connect %s" % ("*" if uid == UINT32_MAX else uid, batch[:2]))
        for name, records in zip(("own", "send", "receive"), batch[2:]):
            for record in records:
                print("  %s %s" % (name, record))
    for _, gid, _, batch in gids:
        print("gid %d: connect %s" % (gid, batch[:2]))
        for name, records in zip(("own", "send", "receive"), batch[2:]):
            for record in records:
                print("  %s %s" % (name, record))
    print("selinux %s apparmor %s type %r" % (selinux, apparmor, bus_type))
