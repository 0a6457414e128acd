import CaravanCore
import Foundation
import Hummingbird
import Logging

/// The OpenAI-compatible HTTP API over a Caravan cluster: `GET /v1/models`,
/// `POST /v1/completions`, `POST /v1/chat/completions` (JSON or Server-Sent Events).
public struct OpenAIServer: Sendable {
    /// Largest request body accepted (bigger: 413).
    public static let defaultMaxBodyBytes = 1 << 20

    let gateway: ClusterGateway
    let maxBodyBytes: Int
    let logger: Logger
    /// Keys a request must bear (`Authorization: Bearer`); nil: no authentication.
    let apiKeys: APIKeys?

    /// Serves jobs through `gateway`; with `apiKeys`, only requests bearing one of them.
    public init(gateway: ClusterGateway, maxBodyBytes: Int = OpenAIServer.defaultMaxBodyBytes, apiKeys: APIKeys? = nil,
                logger: Logger) {
        self.gateway = gateway
        self.maxBodyBytes = maxBodyBytes
        self.apiKeys = apiKeys
        self.logger = logger
    }

    /// The router with every route and the error rendering.
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        // Requests, durations and errors by route and status (swift-metrics; recorded only when
        // the executable bootstrapped a backend with --metrics).
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: OpenAIErrorMiddleware(logger: logger))
        if let apiKeys { router.add(middleware: APIKeyMiddleware(keys: apiKeys)) }
        router.get("/v1/models") { _, _ in try await self.models() }
        router.post("/v1/completions") { request, _ in try await self.complete(request, kind: .text) }
        router.post("/v1/chat/completions") { request, _ in try await self.complete(request, kind: .chat) }
        return router
    }

    /// A Hummingbird application (a swift-service-lifecycle `Service`) listening on `host:port`;
    /// `onRunning` gets the bound port (useful with port 0).
    public func application(host: String, port: Int,
                            onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        Application(router: router(),
                    configuration: .init(address: .hostname(host, port: port), serverName: "caravan"),
                    onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
                    logger: logger)
    }

    static func json(_ data: Data, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    func models() async throws(OpenAIError) -> Response {
        let name = try await gateway.modelName()
        let list = ModelList(names: [name], created: Int(Date().timeIntervalSince1970))
        return Self.json((try? OpenAIJSON.encoder.encode(list)) ?? Data())
    }

    func readBody(_ request: Request) async throws(OpenAIError) -> Data {
        do {
            let buffer = try await request.body.collect(upTo: maxBodyBytes)
            return Data(buffer.readableBytesView)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw .tooLarge(limit: maxBodyBytes)
        } catch {
            throw .invalid("the request body could not be read: \(error)")
        }
    }

    func complete(_ request: Request, kind: CompletionKind) async throws(OpenAIError) -> Response {
        let body = try await readBody(request)
        var job: JobRequest
        let fields: SamplingFields
        switch kind {
        case .text:
            let r = try decodeRequest(CompletionRequest.self, from: body)
            (job, fields) = (try r.jobRequest(), r.sampling)
        case .chat:
            let r = try decodeRequest(ChatCompletionRequest.self, from: body)
            (job, fields) = (try r.jobRequest(), r.sampling)
        }
        let served = try await gateway.modelName()
        if let asked = fields.model, !asked.isEmpty, !Self.names(asked, served) {
            throw .modelNotFound(asked, served: served)
        }
        let id = (kind == .chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        job.clientRequestID = id
        let renderer = CompletionRenderer(kind: kind, id: id, model: served, created: Int(Date().timeIntervalSince1970))
        let pieces = gateway.run(job)
        if fields.stream == true {
            return try await stream(pieces, renderer: renderer, includeUsage: fields.stream_options?.include_usage == true)
        }
        var text = ""
        do {
            for try await piece in pieces {
                switch piece {
                case .text(let t): text += t
                case let .finished(tail, reason, prompt, completion):
                    text += tail
                    return Self.json(renderer.response(text: text, finishReason: finishReasonName(reason),
                                                       usage: Usage(prompt: prompt, completion: completion)))
                }
            }
        } catch let e as OpenAIError {
            throw e
        } catch {
            throw .internalError("\(error)")
        }
        throw .unavailable("the job's stream ended without a result")
    }

    /// Whether `asked` names the served model (its name, or its name without `.gguf`).
    static func names(_ asked: String, _ served: String) -> Bool {
        asked == served || (served.hasSuffix(".gguf") && asked == String(served.dropLast(5)))
    }

    /// Streams `pieces` as Server-Sent Events. A failure before the first token is still a
    /// proper error status; a later one is sent as an error event. When the client goes away the
    /// write fails, the stream is dropped and the gateway cancels the job.
    func stream(_ pieces: AsyncThrowingStream<JobPiece, any Error>, renderer: CompletionRenderer,
                includeUsage: Bool) async throws(OpenAIError) -> Response {
        let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        let logger = self.logger
        // Wait for the first piece here, so a refused job (prompt too long, no coordinator) is
        // still answered with its HTTP status.
        let cursor = PieceCursor(pieces)
        let head: JobPiece?
        do {
            head = try await cursor.next()
        } catch let e as OpenAIError {
            throw e
        } catch {
            throw .internalError("\(error)")
        }
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            var first = true
            func send(_ data: Data) async throws { try await writer.write(ByteBuffer(bytes: data)) }
            do {
                var next = head
                while let piece = next {
                    switch piece {
                    case .text(let t):
                        try await send(CompletionRenderer.event(renderer.chunk(text: t, first: first)))
                        first = false
                    case let .finished(tail, reason, prompt, completion):
                        if !tail.isEmpty || first {
                            try await send(CompletionRenderer.event(renderer.chunk(text: tail, first: first)))
                        }
                        try await send(CompletionRenderer.event(renderer.chunk(text: nil, finishReason: finishReasonName(reason))))
                        if includeUsage {
                            try await send(CompletionRenderer.event(renderer.usageChunk(Usage(prompt: prompt, completion: completion))))
                        }
                    }
                    next = try await cursor.next()
                }
                try await send(CompletionRenderer.done)
            } catch let e as OpenAIError {
                try await send(CompletionRenderer.event(e.json))
                try await send(CompletionRenderer.done)
            } catch {
                logger.info("stream ended early (client gone?)", metadata: ["id": "\(renderer.id)", "reason": "\(error)"])
                throw error
            }
            try await writer.finish(nil)
        })
    }
}

/// Renders every error as OpenAI's error JSON (unknown routes: 404).
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as OpenAIError {
            return Self.render(e)
        } catch let e as HTTPError {
            if e.status == .notFound {
                return Self.render(.notFound("no route \(request.method) \(request.uri.path)"))
            }
            if e.status == .contentTooLarge { return Self.render(.tooLarge(limit: OpenAIServer.defaultMaxBodyBytes)) }
            let status = Int(e.status.code)
            return Self.render(OpenAIError(status: status, message: e.body ?? e.status.reasonPhrase,
                                           type: status < 500 ? "invalid_request_error" : "server_error"))
        } catch {
            logger.error("request failed", metadata: ["reason": "\(error)"])
            return Self.render(.internalError("\(error)"))
        }
    }

    static func render(_ e: OpenAIError) -> Response {
        OpenAIServer.json(e.json, status: HTTPResponse.Status(code: e.status))
    }
}

/// One consumer's iterator over a job's pieces, handed from the route handler (first piece) to
/// the response body writer (the rest); used by one task at a time.
final class PieceCursor: @unchecked Sendable {
    private var iterator: AsyncThrowingStream<JobPiece, any Error>.AsyncIterator

    init(_ pieces: AsyncThrowingStream<JobPiece, any Error>) {
        iterator = pieces.makeAsyncIterator()
    }

    func next() async throws -> JobPiece? {
        try await iterator.next()
    }
}
