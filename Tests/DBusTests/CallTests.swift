import DBus
import TestSupport
import Foundation
import Testing

@Suite struct CallTests {
    @Test func peerErrorsArriveWithTheirNameAndMessage() async throws {
        let echo = try await EchoService.start()
        do {
            _ = try await echo.call("Fail", [.string("org.shmbus.Test.Error.Custom"), .string("it broke, on purpose")])
            Issue.record("the call should have failed")
        } catch let error as DBusError {
            #expect(error.name == "org.shmbus.Test.Error.Custom")
            #expect(error.message == "it broke, on purpose")
        }
    }

    @Test func pingReachesAConnectionAndTheBusButNoOneElse() async throws {
        let echo = try await EchoService.start()
        try await echo.client.ping(echo.service.uniqueName)
        try await echo.client.ping(DBusConnection.busDestination)
        let error = await #expect(throws: DBusError.self) { try await echo.client.ping(":1.999999") }
        #expect(error?.name == "org.freedesktop.DBus.Error.ServiceUnknown" || error?.name == "org.freedesktop.DBus.Error.NameHasNoOwner", "\(String(describing: error))")
    }

    @Test func unknownObjectsMethodsAndInterfacesGetStandardErrors() async throws {
        let echo = try await EchoService.start()
        let cases: [(ObjectPath, String?, String, String)] = [
            ("/nowhere", EchoService.interfaceName, "Echo", DBusError.unknownObjectName),
            (echo.path, EchoService.interfaceName, "Nope", DBusError.unknownMethodName),
            (echo.path, "org.shmbus.Test.Other", "Echo", DBusError.unknownInterfaceName),
        ]
        for (path, interface, method, expected) in cases {
            await #expect(throws: DBusError.self) {
                do {
                    _ = try await echo.client.call(
                        destination: echo.service.uniqueName, path: path, interface: interface, method: method, [])
                } catch let error as DBusError {
                    #expect(error.name == expected, "\(path) \(method)")
                    throw error
                }
            }
        }
        // Without an interface, the method is found by name.
        let sum = try await echo.client.call(
            destination: echo.service.uniqueName, path: echo.path, interface: nil, method: "Add", [.int32(2), .int32(40)])
        #expect(sum == [.int32(42)])
    }

    @Test func aWrongSignatureGetsInvalidArgsAndTheServiceLivesOn() async throws {
        let echo = try await EchoService.start()
        do {
            _ = try await echo.call("Add", [.int32(1), .string("two")])
            Issue.record("the call should have failed")
        } catch let error as DBusError {
            #expect(error.name == DBusError.invalidArgsName)
            #expect(error.message.contains("'ii'") && error.message.contains("'is'"))
        }
        #expect(try await echo.call("Add", [.int32(1), .int32(2)]) == [.int32(3)])
    }

    @Test func aHandlerReplyOfTheWrongTypeBecomesAnError() async throws {
        let echo = try await EchoService.start()
        await #expect(throws: DBusError.self) { try await echo.call("WrongReply", []) }
    }

    @Test func callsTimeOut() async throws {
        let echo = try await EchoService.start()
        // The handler answers only after a minute, so that a timeout handled late on a
        // loaded machine still comes first.
        do {
            _ = try await echo.call("Sleep", [.uint32(60_000)], timeout: .milliseconds(200))
            Issue.record("the call should have timed out")
        } catch let error as DBusError {
            #expect(error.name == DBusError.noReplyName)
        }
        // The connection still works after a timeout.
        #expect(try await echo.call("Add", [.int32(1), .int32(1)]) == [.int32(2)])
    }

    @Test func cancellingTheCallingTaskEndsTheCall() async throws {
        let echo = try await EchoService.start()
        let task = Task { try await echo.call("Sleep", [.uint32(60_000)]) }
        try await Task.sleep(for: .milliseconds(100))
        task.cancel()
        let result = await task.result
        #expect(throws: CancellationError.self) { try result.get() }
        // (A cancellation that did not reach the call would end with the handler's
        // reply after 60 s, not with CancellationError. A call cancelled before it was
        // sent ends with CancellationError too: on a loaded machine this may test that.)
        #expect(try await echo.call("Add", [.int32(1), .int32(1)]) == [.int32(2)])
    }

    @Test func tenThousandConcurrentCallsAllGetTheirOwnReply() async throws {
        let echo = try await EchoService.start()
        let total = 10_000
        let tasks = 50
        let correct = try await withThrowingTaskGroup(of: Int.self) { group in
            for t in 0..<tasks {
                group.addTask {
                    try await withThrowingTaskGroup(of: Bool.self) { inner in
                        for i in stride(from: t, to: total, by: tasks) {
                            inner.addTask {
                                // All 10,000 wait at once: libdbus's 25 s would be a
                                // timing on a busy machine; this only guards a hang.
                                let reply = try await echo.call("Add", [.int32(Int32(i)), .int32(1_000_000)], timeout: .seconds(300))
                                return reply == [.int32(Int32(i) + 1_000_000)]
                            }
                        }
                        var ok = 0
                        for try await good in inner where good { ok += 1 }
                        return ok
                    }
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(correct == total)
    }

    @Test func messagesUpToTheArrayLimitWorkAndLargerOnesFailBeforeLibdbus() async throws {
        let echo = try await EchoService.start()
        let limit = DBusLimits.maximumArrayLength
        // 64 MiB replies, made and checked by a debug build in this test process: the
        // timeouts are hang guards, generous for a loaded machine or TSan (60 s was not).
        let reply = try await echo.call("Bytes", [.uint32(UInt32(limit))], timeout: .seconds(300))
        guard case .bytes(let bytes)? = reply.first else {
            Issue.record("no bytes in reply")
            return
        }
        #expect(bytes.count == limit)
        #expect(bytes.allSatisfy { $0 == 0xAB })
        // Sending: one byte over the array limit is refused before libdbus sees it.
        do {
            _ = try await echo.call("Echo", [.variant(.bytes([UInt8](repeating: 1, count: limit + 1)))])
            Issue.record("an array over 64 MiB should be refused")
        } catch let error as DBusError {
            #expect(error.name == DBusError.limitsExceededName)
            #expect(error.message.contains("64 MiB"))
        }
        // A handler whose reply is over the limit answers with an error instead.
        do {
            _ = try await echo.call("Bytes", [.uint32(UInt32(limit + 1))], timeout: .seconds(300))
            Issue.record("a reply over 64 MiB should fail")
        } catch let error as DBusError {
            #expect(error.name == DBusError.limitsExceededName)
        }
        // Two arrays of 64 MiB each make a message over 128 MiB.
        let big = DBusValue.bytes([UInt8](repeating: 2, count: limit))
        let message = try DBusMessage.methodCall(
            destination: echo.service.uniqueName, path: echo.path, interface: EchoService.interfaceName, member: "Echo",
            body: [big, big, .string("x")])
        await #expect(throws: DBusError.self) { _ = try await echo.client.call(message) }
    }

    @Test func anUnreachableBusGivesAClearError() async throws {
        do {
            _ = try await DBusConnection.connect(to: .address("unix:path=/nonexistent/shmbus-test-socket"))
            Issue.record("connecting should fail")
        } catch {
            #expect(error.message.contains("/nonexistent/shmbus-test-socket"))
            #expect(error.name.hasPrefix("org.freedesktop.DBus.Error."))
        }
        await #expect(throws: DBusError.self) {
            _ = try await DBusConnection.connect(to: .address("not an address"))
        }
    }

    @Test func aClosedConnectionFailsCallsInFlightAndAfter() async throws {
        let echo = try await EchoService.start()
        let client = try await TestBus.connect()
        let inFlight = Task {
            try await client.call(
                destination: echo.service.uniqueName, path: echo.path, interface: EchoService.interfaceName,
                method: "Sleep", [.uint32(60_000)])
        }
        // (The reply would come only after a minute: whether the call was in flight or
        // not sent yet, closing must fail it.)
        try await Task.sleep(for: .milliseconds(100))
        client.close()
        let result = await inFlight.result
        #expect(throws: DBusError.self) { try result.get() }
        await #expect(throws: DBusError.self) { _ = try await client.listNames() }
        #expect(!client.isConnected)
    }
}
