import CaravanCore
import Foundation
import GGUF

extension LayerCache {
    /// Keeps the layer cache of model `sha256` in `directory` within a standby budget. The cache
    /// holds the stage the worker runs (`own`), its standby copies (`standby`) and whatever
    /// earlier plans left there (old stages, old standby copies). Those leftovers may take what
    /// `budget` leaves after the standby copies; beyond that they are released (their disk
    /// space freed), farthest from the layers kept first, so that a worker's cache does not grow
    /// with every re-plan. The GGUF header's blocks always stay. Returns the bytes released, 0
    /// when there is nothing to trim or no such cache, nil when another worker holds the cache
    /// (the caller tries again at its next assignment).
    public static func trim(directory: String, sha256: String, own: LayerRange?, standby: [LayerRange], layerCount: Int,
                            budget: UInt64) -> UInt64? {
        guard let m = Manifest.read(directory + "/" + sha256 + ".blocks.json"), m.sha256 == sha256, m.blockSize > 0 else { return 0 }
        let cache: LayerCache
        do {
            cache = try LayerCache(directory: directory, sha256: sha256, size: m.size, blockSize: m.blockSize)
        } catch {
            return error.cacheBusy ? nil : 0
        }
        guard let file = try? GGUFFile(path: cache.path) else { return 0 }
        func blocks(_ layers: LayerRange) -> Set<Int> {
            Set(StageByteRanges.blocks(covering: StageByteRanges.ranges(file: file, layers: layers, layerCount: layerCount),
                                       blockSize: m.blockSize, fileSize: m.size))
        }
        let header = Set(StageByteRanges.blocks(covering: [0..<UInt64(file.dataOffset)], blockSize: m.blockSize, fileSize: m.size))
        let copies = standby.reduce(into: Set<Int>()) { $0.formUnion(blocks($1)) }
        let keep = header.union(copies).union(own.map(blocks) ?? [])
        let copyBytes = copies.subtracting(header).reduce(UInt64(0)) { $0 + cache.bytes(ofBlock: $1) }
        let allowance = budget > copyBytes ? budget - copyBytes : 0
        let release = blocksToRelease(held: cache.heldBlocks, keep: keep, allowance: allowance, bytes: cache.bytes(ofBlock:))
        guard !release.isEmpty else { return 0 }
        let released = cache.release(release)
        do {
            try cache.commit()
        } catch {
            return 0
        }
        return released
    }

    /// The held blocks outside `keep` to release so that those left take at most `allowance`
    /// bytes: the farthest from any kept block first (the neighbours of the layers kept are the
    /// likeliest to be wanted next), the highest index first among equals.
    static func blocksToRelease(held: Set<Int>, keep: Set<Int>, allowance: UInt64, bytes: (Int) -> UInt64) -> [Int] {
        let extra = held.subtracting(keep)
        var total = extra.reduce(UInt64(0)) { $0 + bytes($1) }
        guard total > allowance else { return [] }
        let kept = keep.sorted()
        func distance(_ b: Int) -> Int {
            guard !kept.isEmpty else { return Int.max }
            var lo = 0, hi = kept.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if kept[mid] < b { lo = mid + 1 } else { hi = mid }
            }
            let after = lo < kept.count ? kept[lo] - b : Int.max
            let before = lo > 0 ? b - kept[lo - 1] : Int.max
            return min(after, before)
        }
        var release: [Int] = []
        for b in extra.sorted(by: { (distance($0), $0) > (distance($1), $1) }) {
            guard total > allowance else { break }
            release.append(b)
            total -= bytes(b)
        }
        return release
    }
}
