/**
 * Cloudflare's published IP ranges as the tests' mocks return them (a few
 * real ranges, not the full list), and the mock of the data source that
 * looks them up.
 */
import type { IpRanges } from "../../components/hosts/firewall-rules";
import type { CallHandler } from "./mocks";

export const FAKE_CLOUDFLARE_RANGES: IpRanges = {
    ipv4: ["173.245.48.0/20", "103.21.244.0/22", "104.16.0.0/13"],
    ipv6: ["2400:cb00::/32", "2606:4700::/32"],
};

/** Token of the `cloudflare.getIpRanges` invoke. */
export const GET_IP_RANGES = "cloudflare:index/getIpRanges:getIpRanges";

/** Answers `cloudflare.getIpRanges` with {@link FAKE_CLOUDFLARE_RANGES}; `onCall` counts or records calls. */
export function ipRangesHandler(onCall: () => void = () => undefined): CallHandler {
    return () => {
        onCall();
        return { etag: "fake", ipv4Cidrs: [...FAKE_CLOUDFLARE_RANGES.ipv4], ipv6Cidrs: [...FAKE_CLOUDFLARE_RANGES.ipv6], jdcloudCidrs: [] };
    };
}
