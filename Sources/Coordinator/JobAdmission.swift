import CaravanCore
import ChatTemplate
import Inference
import Sampling
import Tokenizer

/// Whether the coordinator takes a job, decided before it enters the ``JobTable``: the limits
/// (shutting down, unfinished jobs, per client, a backed-up outbox), then the input (chat template,
/// tokenizer, vocabulary), then the sampling parameters and the context. Pure: no I/O, no clock;
/// the seed a job leaves open comes from the caller.
struct JobAdmission: Sendable {
    let tokenizer: Tokenizer
    let template: ChatTemplate?
    /// Positions of one sequence (a prompt must leave room for a token).
    let contextLimit: Int
    let limits: Limits

    /// Limits on what the coordinator holds.
    struct Limits: Sendable, Equatable {
        /// Unfinished jobs held at most.
        var maxUnfinishedJobs: Int
        /// Unfinished jobs one client key may hold.
        var maxJobsPerClient: Int
        /// Messages queued for clients at most (new jobs are refused beyond half of it).
        var maxOutbox: Int
    }

    /// What the coordinator holds when the job arrives.
    struct Load: Sendable, Equatable {
        /// Whether it takes jobs at all, and if not why.
        var admitting = true
        var unavailableReason = ""
        /// Unfinished jobs, in all and of the submitting key (0 when that key has no limit).
        var unfinished = 0
        var ownUnfinished = 0
        /// Messages waiting in the client outbox.
        var outboxQueued = 0
    }

    /// Why a job is refused.
    enum Refusal: Error, Equatable, CustomStringConvertible {
        /// The coordinator does not take jobs now (shutting down); the reason says why.
        case notAdmitting(String)
        /// It holds its limit of unfinished jobs.
        case coordinatorFull(limit: Int)
        /// The submitting key holds its limit of unfinished jobs.
        case clientFull(limit: Int)
        /// Messages to clients are backing up.
        case outboxBackedUp
        /// A chat was sent but the model has no chat template.
        case noChatTemplate
        /// The chat template failed to render the conversation.
        case chatTemplate(String)
        /// A prompt token id is not in the vocabulary.
        case tokenOutsideVocabulary(Int32, vocabulary: Int)
        /// The prompt does not fit in the context.
        case contextOverflow(String)
        /// The sampling parameters (or an empty prompt) are not acceptable.
        case invalidRequest(String)

        /// The failure the client is told.
        var failure: JobFailure {
            switch self {
            case .notAdmitting(let reason): JobFailure(.unavailable, reason)
            case .coordinatorFull(let limit):
                JobFailure(.unavailable, "the coordinator holds its limit of \(limit) unfinished jobs; try again when some have ended")
            case .clientFull(let limit):
                JobFailure(.tooManyJobs, "this client holds its limit of \(limit) running and queued jobs; try again when some have ended")
            case .outboxBackedUp:
                JobFailure(.unavailable, "the coordinator cannot send to its clients fast enough now; try again later")
            case .noChatTemplate: JobFailure(.invalidRequest, "the model has no chat template")
            case .chatTemplate(let why): JobFailure(.invalidRequest, "chat template: \(why)")
            case let .tokenOutsideVocabulary(id, vocabulary):
                JobFailure(.invalidRequest, "token id \(id) is outside the vocabulary (\(vocabulary))")
            case .contextOverflow(let why): JobFailure(.contextOverflow, why)
            case .invalidRequest(let why): JobFailure(.invalidRequest, why)
            }
        }

        var description: String { failure.message }
    }

    /// An admitted job: its prompt tokens, and its session on `sequence`, whose parameters have the
    /// seed and the token limit resolved.
    struct Admitted: Sendable {
        let prompt: [Int32]
        let session: GenerationSession
        /// The seed its draws use (the request's, or the one drawn for it).
        let seed: UInt64
    }

    /// Decides on `request` arriving under `load`; an admitted job's session runs on `sequence`,
    /// and `drawSeed` gives the seed when the request leaves it to the coordinator.
    func admit(_ request: JobRequest, sequence: SequenceID, load: Load,
               drawSeed: () -> UInt64) -> Result<Admitted, Refusal> {
        guard load.admitting else { return .failure(.notAdmitting(load.unavailableReason)) }
        guard load.unfinished < limits.maxUnfinishedJobs else { return .failure(.coordinatorFull(limit: limits.maxUnfinishedJobs)) }
        guard load.ownUnfinished < limits.maxJobsPerClient else { return .failure(.clientFull(limit: limits.maxJobsPerClient)) }
        guard load.outboxQueued < limits.maxOutbox / 2 else { return .failure(.outboxBackedUp) }
        let prompt: [Int32]
        switch tokens(of: request.input) {
        case .success(let ids): prompt = ids
        case .failure(let refusal): return .failure(refusal)
        }
        // The seed is resolved now: a replayed or restored job must draw exactly the same numbers.
        let parameters = request.parameters(contextLimit: contextLimit, drawnSeed: request.seed ?? drawSeed())
        do {
            try parameters.validate()
            let session = try GenerationSession(sequence: sequence, prompt: prompt, parameters: parameters,
                                                tokenizer: tokenizer, contextLimit: contextLimit)
            return .success(Admitted(prompt: prompt, session: session, seed: parameters.seed))
        } catch let error as GenerationError {
            if case .promptTooLong = error { return .failure(.contextOverflow(error.description)) }
            return .failure(.invalidRequest(error.description))
        } catch {
            return .failure(.invalidRequest("\(error)"))
        }
    }

    /// The prompt's token ids: text tokenized (special tokens parsed), a chat rendered with the
    /// model's template first, ids checked against the vocabulary.
    func tokens(of input: JobInput) -> Result<[Int32], Refusal> {
        switch input {
        case .prompt(let text):
            return .success(tokenizer.encode(text, addSpecial: true, parseSpecial: true))
        case .chat(let turns):
            guard let template else { return .failure(.noChatTemplate) }
            let bos = tokenizer.bosToken.map { String(decoding: tokenizer.piece($0), as: UTF8.self) } ?? ""
            let eos = tokenizer.eosToken.map { String(decoding: tokenizer.piece($0), as: UTF8.self) } ?? ""
            do {
                let rendered = try template.render(messages: turns.map { ChatMessage(role: $0.role, content: $0.content) },
                                                   addGenerationPrompt: true, bosToken: bos, eosToken: eos)
                // A template that writes the BOS itself gets no second one.
                return .success(tokenizer.encode(rendered, addSpecial: !(!bos.isEmpty && rendered.hasPrefix(bos)), parseSpecial: true))
            } catch {
                return .failure(.chatTemplate("\(error)"))
            }
        case .tokens(let ids):
            if let bad = ids.first(where: { $0 < 0 || Int($0) >= tokenizer.vocabularySize }) {
                return .failure(.tokenOutsideVocabulary(bad, vocabulary: tokenizer.vocabularySize))
            }
            return .success(ids)
        }
    }
}
