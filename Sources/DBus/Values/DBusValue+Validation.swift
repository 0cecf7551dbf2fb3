/// Protocol limits of the D-Bus specification (libdbus's `dbus-protocol.h`).
public enum DBusLimits {
    /// Largest array, in bytes of marshalled elements: 64 MiB.
    public static let maximumArrayLength = 67_108_864
    /// Largest message, header and body: 128 MiB.
    public static let maximumMessageLength = 134_217_728
    /// Deepest container nesting within one message, variants included.
    public static let maximumNestingDepth = 64
    /// The most Unix fds one message may carry before the bus refuses it.
    public static let maximumUnixFDs = 16 * 4
    /// Room left for the message header when checking the body against the message limit.
    static let headerAllowance = 4096
}

/// What a pass over values found: the body's marshalled size and its fd count.
struct MarshalPlan {
    var size = 0
    var unixFDs = 0
}

extension DBusValue {
    /// Checks that `values` can be marshalled as a message body and that the body
    /// fits the protocol limits. Every check libdbus would make with an assertion
    /// (types of array elements, dict keys, NUL in strings, nesting) happens here
    /// first, so that invalid input throws instead of aborting the process.
    static func plan(body values: [DBusValue]) throws(DBusError) -> MarshalPlan {
        var plan = MarshalPlan()
        for value in values {
            try value.measure(into: &plan, depth: 0)
        }
        if plan.size > DBusLimits.maximumMessageLength - DBusLimits.headerAllowance {
            throw .limitsExceeded(
                "message body is \(plan.size) bytes; a D-Bus message may be at most \(DBusLimits.maximumMessageLength) bytes"
            )
        }
        if plan.unixFDs > DBusLimits.maximumUnixFDs {
            throw .limitsExceeded("message carries \(plan.unixFDs) file descriptors; the limit is \(DBusLimits.maximumUnixFDs)")
        }
        return plan
    }

    private static func align(_ offset: inout Int, _ alignment: Int) {
        offset = (offset + alignment - 1) & ~(alignment - 1)
    }

    /// Validates this value and adds its marshalled size at `plan.size` (with padding).
    private func measure(into plan: inout MarshalPlan, depth: Int) throws(DBusError) {
        let type = self.type
        Self.align(&plan.size, type.alignment)
        switch self {
        case .byte: plan.size += 1
        case .int16, .uint16: plan.size += 2
        case .boolean, .int32, .uint32: plan.size += 4
        case .int64, .uint64, .double: plan.size += 8
        case .unixFD:
            plan.size += 4
            plan.unixFDs += 1
        case .string(let s):
            try DBusName.validateString(s)
            plan.size += 4 + s.utf8.count + 1
        case .objectPath(let p):
            plan.size += 4 + p.rawValue.utf8.count + 1
        case .signature(let s):
            plan.size += 1 + s.rawValue.utf8.count + 1
        case .variant(let inner):
            try Self.checkDepth(depth)
            let signature = inner.type.signature
            try Self.checkType(inner.type, in: "variant")
            plan.size += 1 + signature.utf8.count + 1
            try inner.measure(into: &plan, depth: depth + 1)
        case .bytes(let bytes):
            try Self.checkDepth(depth)
            plan.size += 4
            try Self.checkArrayLength(bytes.count)
            plan.size += bytes.count
        case .array(let element, let elements):
            try Self.checkDepth(depth)
            try Self.checkType(type, in: "array")
            plan.size += 4
            Self.align(&plan.size, element.alignment)
            let start = plan.size
            for (i, value) in elements.enumerated() {
                guard value.type == element else {
                    throw .invalidArgument("array of '\(element)' has element \(i) of type '\(value.type)'")
                }
                try value.measure(into: &plan, depth: depth + 1)
            }
            try Self.checkArrayLength(plan.size - start)
        case .dictionary(let keyType, let valueType, let entries):
            try Self.checkDepth(depth)
            try Self.checkType(type, in: "dictionary")
            plan.size += 4
            Self.align(&plan.size, 8)
            let start = plan.size
            for (i, entry) in entries.enumerated() {
                guard entry.key.type == keyType, entry.value.type == valueType else {
                    throw .invalidArgument(
                        "dictionary 'a{\(keyType)\(valueType)}' has entry \(i) of types '\(entry.key.type)', '\(entry.value.type)'"
                    )
                }
                Self.align(&plan.size, 8)
                try entry.key.measure(into: &plan, depth: depth + 2)
                try entry.value.measure(into: &plan, depth: depth + 2)
            }
            try Self.checkArrayLength(plan.size - start)
        case .structure(let fields):
            try Self.checkDepth(depth)
            guard !fields.isEmpty else { throw .invalidArgument("a struct needs at least one field") }
            for field in fields {
                try field.measure(into: &plan, depth: depth + 1)
            }
        }
    }

    private static func checkDepth(_ depth: Int) throws(DBusError) {
        guard depth < DBusLimits.maximumNestingDepth else {
            throw .limitsExceeded("values nested more than \(DBusLimits.maximumNestingDepth) containers deep")
        }
    }

    private static func checkArrayLength(_ length: Int) throws(DBusError) {
        guard length <= DBusLimits.maximumArrayLength else {
            throw .limitsExceeded(
                "array is \(length) bytes; a D-Bus array may be at most \(DBusLimits.maximumArrayLength) bytes (64 MiB)"
            )
        }
    }

    /// Checks a type built in Swift against the signature rules (the parser enforces
    /// them for parsed signatures; a `DBusType` constructed by hand may break them).
    static func checkType(_ type: DBusType, in context: String) throws(DBusError) {
        do {
            _ = try DBusSignature(validating: type.signature)
        } catch {
            throw .invalidArgument("\(context) type '\(type)' is invalid: \(error.message)")
        }
    }
}
