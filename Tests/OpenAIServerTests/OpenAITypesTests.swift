import CaravanCore
import Foundation
@testable import OpenAIServer
import XCTest

/// JSON request validation and conversion to Caravan jobs; response and chunk rendering.
final class OpenAITypesTests: XCTestCase {
    private func completion(_ json: String) throws(OpenAIError) -> JobRequest {
        try decodeRequest(CompletionRequest.self, from: Data(json.utf8)).jobRequest()
    }

    private func chat(_ json: String) throws(OpenAIError) -> JobRequest {
        try decodeRequest(ChatCompletionRequest.self, from: Data(json.utf8)).jobRequest()
    }

    private func rejected(_ body: () throws(OpenAIError) -> JobRequest, param: String?,
                          status: Int = 400, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let job = try body()
            XCTFail("accepted: \(job)", file: file, line: line)
        } catch {
            XCTAssertEqual(error.status, status, error.message, file: file, line: line)
            XCTAssertEqual(error.param, param, error.message, file: file, line: line)
            XCTAssertEqual(error.type, "invalid_request_error", file: file, line: line)
        }
    }

    func testCompletionMapsSamplingFields() throws {
        let job = try completion(#"""
        {"model": "m", "prompt": "Hello", "max_tokens": 7, "temperature": 0, "top_p": 0.9, "top_k": 40,
         "min_p": 0.05, "repetition_penalty": 1.1, "seed": 42, "stop": ["\n", "END"], "n": 1,
         "presence_penalty": 0, "frequency_penalty": 0.0, "user": "someone"}
        """#)
        XCTAssertEqual(job.input, .prompt("Hello"))
        let s = job.sampling
        XCTAssertEqual(s.temperature, 0)
        XCTAssertEqual(s.topP, 0.9)
        XCTAssertEqual(s.topK, 40)
        XCTAssertEqual(s.minP, 0.05)
        XCTAssertEqual(s.repeatPenalty, 1.1)
        XCTAssertEqual(s.repeatLastN, 64, "llama.cpp's window unless repeat_last_n says otherwise")
        XCTAssertEqual(s.presencePenalty, 0)
        XCTAssertEqual(s.frequencyPenalty, 0)
        XCTAssertEqual(job.seed, 42)
        XCTAssertEqual(job.maxTokens, 7)
        XCTAssertEqual(s.stop, ["\n", "END"])
        XCTAssertNil(job.model, "the cluster's current model is used")
    }

    func testDefaultsAndSingleStopString() throws {
        let job = try completion(#"{"prompt": ["Hi"], "stop": "x"}"#)
        XCTAssertEqual(job.input, .prompt("Hi"))
        XCTAssertEqual(job.sampling.temperature, 1, "OpenAI's default temperature, not greedy")
        XCTAssertEqual(job.sampling.topK, 0, "no top-k unless asked for")
        XCTAssertEqual(job.sampling.topP, 1)
        XCTAssertEqual(job.sampling.minP, 0)
        XCTAssertEqual(job.sampling.repeatPenalty, 1)
        XCTAssertNil(job.maxTokens, "up to the context limit")
        XCTAssertNil(job.seed, "the coordinator draws one")
        XCTAssertEqual(job.sampling.stop, ["x"])
        XCTAssertEqual(try completion(#"{"prompt": "a", "seed": -1}"#).seed, UInt64.max)
    }

    /// OpenAI's presence and frequency penalties (and llama.cpp's window) reach the job.
    func testPenaltiesAreCarried() throws {
        let s = try completion(#"{"prompt": "a", "presence_penalty": 1.5, "frequency_penalty": -0.25, "repeat_last_n": -1}"#).sampling
        XCTAssertEqual(s.presencePenalty, 1.5)
        XCTAssertEqual(s.frequencyPenalty, -0.25)
        XCTAssertEqual(s.repeatLastN, -1)
        let c = try chat(#"{"messages": [{"role": "user", "content": "a"}], "presence_penalty": -2, "frequency_penalty": 2}"#).sampling
        XCTAssertEqual(c.presencePenalty, -2)
        XCTAssertEqual(c.frequencyPenalty, 2)
    }

    func testInvalidParametersAreRejectedByName() {
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": "a", "temperature": -1}"#) }, param: "temperature")
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": "a", "temperature": 2.5}"#) }, param: "temperature")
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": "a", "top_p": 0}"#) }, param: "top_p")
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": "a", "top_p": 1.5}"#) }, param: "top_p")
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": "a", "max_tokens": 0}"#) }, param: "max_tokens")
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": "a", "n": 2}"#) }, param: "n")
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": "a", "top_k": -3}"#) }, param: "top_k")
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": "a", "stop": ["", "x"]}"#) }, param: "stop")
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": "a", "presence_penalty": 2.5}"#) }, param: "presence_penalty")
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": "a", "presence_penalty": -2.01}"#) }, param: "presence_penalty")
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": "a", "frequency_penalty": 3}"#) }, param: "frequency_penalty")
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": "a", "frequency_penalty": 1e300}"#) }, param: "frequency_penalty")
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": "a", "repeat_last_n": -2}"#) }, param: "repeat_last_n")
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": "a", "logprobs": 2}"#) }, param: "logprobs")
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": ""}"#) }, param: "prompt")
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": ["a", "b"]}"#) }, param: "prompt")
        rejected({ () throws(OpenAIError) in try completion(#"{"max_tokens": 3}"#) }, param: "prompt")
        rejected({ () throws(OpenAIError) in try chat(#"{"messages": [{"role": "user", "content": "a"}], "max_tokens": 2, "max_completion_tokens": 3}"#) }, param: "max_tokens")
    }

    func testMalformedJSONIsA400() {
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": "a", "#) }, param: nil)
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": 5}"#) }, param: "prompt")
        rejected({ () throws(OpenAIError) in try completion(#"{"prompt": "a", "max_tokens": "many"}"#) }, param: "max_tokens")
    }

    func testChatMessagesAndRoles() throws {
        let job = try chat(#"""
        {"messages": [{"role": "developer", "content": "Be brief."},
                      {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
                      {"role": "assistant", "content": null},
                      {"role": "user", "content": "Go"}],
         "max_completion_tokens": 5}
        """#)
        guard case .chat(let c) = job.input else { return XCTFail("not a chat: \(job)") }
        XCTAssertEqual(c.map(\.role), ["system", "user", "assistant", "user"])
        XCTAssertEqual(c.map(\.content), ["Be brief.", "Hi there", "", "Go"])
        XCTAssertEqual(job.maxTokens, 5)
    }

    func testChatRejections() {
        rejected({ () throws(OpenAIError) in try chat(#"{"messages": []}"#) }, param: "messages")
        rejected({ () throws(OpenAIError) in try chat(#"{}"#) }, param: "messages")
        rejected({ () throws(OpenAIError) in try chat(#"{"messages": [{"role": "tool", "content": "x"}]}"#) }, param: "messages[0].role")
        rejected({ () throws(OpenAIError) in try chat(#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#) }, param: "messages[0].content")
        rejected({ () throws(OpenAIError) in try chat(#"{"messages": [{"role": "user", "content": "x"}], "logprobs": true}"#) }, param: "logprobs")
        rejected({ () throws(OpenAIError) in try chat(#"{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}"#) }, param: "tools")
    }

    private func object(_ data: Data) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func testResponsesAndChunks() throws {
        let chat = CompletionRenderer(kind: .chat, id: "chatcmpl-1", model: "m", created: 7)
        let whole = try object(chat.response(text: "Hello", finishReason: "length", usage: Usage(prompt: 3, completion: 2)))
        XCTAssertEqual(whole["object"] as? String, "chat.completion")
        let choice = try XCTUnwrap((whole["choices"] as? [[String: Any]])?.first)
        XCTAssertEqual((choice["message"] as? [String: Any])?["content"] as? String, "Hello")
        XCTAssertEqual((choice["message"] as? [String: Any])?["role"] as? String, "assistant")
        XCTAssertEqual(choice["finish_reason"] as? String, "length")
        XCTAssertEqual((whole["usage"] as? [String: Any])?["total_tokens"] as? Int, 5)

        let firstChunk = try object(chat.chunk(text: "He", first: true))
        XCTAssertEqual(firstChunk["object"] as? String, "chat.completion.chunk")
        let delta = try XCTUnwrap(((firstChunk["choices"] as? [[String: Any]])?.first)?["delta"] as? [String: Any])
        XCTAssertEqual(delta["content"] as? String, "He")
        XCTAssertEqual(delta["role"] as? String, "assistant")
        let last = try XCTUnwrap((try object(chat.chunk(text: nil, finishReason: "stop"))["choices"] as? [[String: Any]])?.first)
        XCTAssertEqual(last["finish_reason"] as? String, "stop")
        XCTAssertEqual((last["delta"] as? [String: Any])?.count, 0)

        let text = CompletionRenderer(kind: .text, id: "cmpl-1", model: "m", created: 7)
        let t = try XCTUnwrap((try object(text.chunk(text: "abc"))["choices"] as? [[String: Any]])?.first)
        XCTAssertEqual(t["text"] as? String, "abc")
        XCTAssertTrue(t["finish_reason"] is NSNull, "finish_reason is an explicit null mid-stream")
        XCTAssertEqual(String(decoding: CompletionRenderer.event(Data("{}".utf8)), as: UTF8.self), "data: {}\n\n")
    }

    func testErrorJSONAndFinishReasons() throws {
        let e = OpenAIError.invalid("bad", param: "temperature")
        let detail = try XCTUnwrap(try object(e.json)["error"] as? [String: Any])
        XCTAssertEqual(detail["message"] as? String, "bad")
        XCTAssertEqual(detail["type"] as? String, "invalid_request_error")
        XCTAssertEqual(detail["param"] as? String, "temperature")
        XCTAssertTrue(detail["code"] is NSNull)
        XCTAssertEqual(finishReasonName(.length), "length")
        XCTAssertEqual(finishReasonName(.endOfSequence), "stop")
        XCTAssertEqual(finishReasonName(.stopString), "stop")
        XCTAssertEqual(ClusterGateway.map(JobFailure(.contextOverflow, "prompt too long")).status, 400)
        XCTAssertEqual(ClusterGateway.map(JobFailure(.unavailable, "no workers")).status, 503)
        XCTAssertEqual(ClusterGateway.map(JobFailure(.tooManyJobs, "limit")).status, 429)
        XCTAssertEqual(ClusterGateway.map(.badReply("job_event.job_id")).status, 500)
        XCTAssertEqual(ClusterGateway.map(.timeout("job")).status, 503)
        XCTAssertTrue(OpenAIServer.names("SmolLM2.gguf", "SmolLM2.gguf"))
        XCTAssertTrue(OpenAIServer.names("SmolLM2", "SmolLM2.gguf"))
        XCTAssertFalse(OpenAIServer.names("gpt-4", "SmolLM2.gguf"))
    }
}
