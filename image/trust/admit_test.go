package trust

import (
	"fmt"
	"testing"

	"github.com/crivet/crivet/image/record"
)

func TestAdmitCacheIsBoundedAndForgets(t *testing.T) {
	var nilCache *admitCache
	nilCache.add("k") // a dry run has no cache: no panic, nothing kept
	if nilCache.has("k") {
		t.Fatal("nil cache has a key")
	}
	v := New(Config{})
	c := &v.admitted
	for i := range admitCacheMax {
		c.add(fmt.Sprint(i))
	}
	if !c.has("0") || !c.has(fmt.Sprint(admitCacheMax-1)) {
		t.Fatal("cache lost a key below its bound")
	}
	c.add("one more") // full: cleared, then kept
	if c.has("0") || !c.has("one more") {
		t.Fatal("a full cache was not cleared before the new key")
	}
	v.ForgetAdmissions()
	if c.has("one more") {
		t.Fatal("ForgetAdmissions kept a key")
	}
}

// A bundle vouches only for the manifest it was found for, as an image of
// the repository it was found in.
func TestUsableBundles(t *testing.T) {
	const m, other, index = "sha256:aa", "sha256:bb", "sha256:cc"
	kept := []record.KeptBundle{
		{Manifest: m, Subject: m, Repository: "reg/app", Bundle: []byte("1")},
		{Manifest: m, Subject: index, Repository: "reg/app", Bundle: []byte("2")},
		{Manifest: m, Subject: m, Repository: "mirror/app", Bundle: []byte("3")},
		{Manifest: other, Subject: other, Repository: "reg/app", Bundle: []byte("4")},
	}
	bundles, used, subjects := usableBundles(kept, m, "reg/app")
	if len(bundles) != 2 || string(bundles[0]) != "1" || string(bundles[1]) != "2" {
		t.Fatalf("bundles %q, want 1 and 2", bundles)
	}
	if fmt.Sprint(used) != "[0 1]" || len(subjects) != 1 || subjects[0] != index {
		t.Fatalf("used %v subjects %v", used, subjects)
	}
	if why := unusable(&kept[2], m, "reg/app"); why == "" {
		t.Fatal("a bundle from another repository is usable")
	}
	if why := unusable(&kept[3], m, "reg/app"); why == "" {
		t.Fatal("a bundle for another manifest is usable")
	}
}
