package identity

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// DirectoryConfig is the policy a Directory applies.
type DirectoryConfig struct {
	AllowedDomains []string
	Mapping        map[string]string
	Filter         string
	Transform      string
	Common         []string
}

// Directory turns an Identity into a Principal: user name, domain policy,
// and groups → roles by mapping → filter → transform, plus common roles,
// in the order of Altinity's token user directory.
type Directory struct {
	allowedDomains []string
	mapping        map[string]string
	filter         *regexp.Regexp // nil keeps every group
	transform      Transform
	common         []string
}

// ErrDenied reports an identity that the directory policy refuses.
var ErrDenied = errors.New("denied")

// NewDirectory compiles cfg; errors name the offending key.
func NewDirectory(cfg DirectoryConfig) (*Directory, error) {
	d := &Directory{mapping: cfg.Mapping, common: cfg.Common}
	for _, dom := range cfg.AllowedDomains {
		d.allowedDomains = append(d.allowedDomains, strings.ToLower(strings.TrimPrefix(dom, "@")))
	}
	if cfg.Filter != "" {
		re, err := regexp.Compile(`^(?:` + cfg.Filter + `)$`)
		if err != nil {
			return nil, fmt.Errorf("directory.roles.filter: %v", err)
		}
		d.filter = re
	}
	t, err := ParseTransform(cfg.Transform)
	if err != nil {
		return nil, fmt.Errorf("directory.roles.transform: %v", err)
	}
	d.transform = t
	return d, nil
}

// Principal applies the policy to id.
func (d *Directory) Principal(id *Identity) (*Principal, error) {
	if len(d.allowedDomains) > 0 {
		email, _ := id.Claims["email"].(string)
		if email == "" {
			email = id.Username
		} else if v, ok := id.Claims["email_verified"]; ok && v != true {
			// Some IdPs let people type any address; only a verified one
			// proves a domain.
			return nil, fmt.Errorf("%w: e-mail address is not verified (email_verified is %v)", ErrDenied, v)
		}
		_, domain, ok := strings.Cut(strings.ToLower(email), "@")
		if !ok || !slices.Contains(d.allowedDomains, domain) {
			return nil, fmt.Errorf("%w: e-mail domain %q is not in directory.allowed_domains", ErrDenied, domain)
		}
	}
	return &Principal{
		User:      id.Username,
		Roles:     d.Roles(id.Groups),
		Processor: id.Processor,
		Subject:   id.Subject,
		Expiry:    id.Expiry,
	}, nil
}

// Roles runs the group pipeline; the result is deduplicated in first-seen
// order, with common roles last.
func (d *Directory) Roles(groups []string) []string {
	roles := make([]string, 0, len(groups)+len(d.common))
	add := func(r string) {
		if r != "" && !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	for _, g := range groups {
		if m, ok := d.mapping[g]; ok {
			g = m
		}
		if d.filter != nil && !d.filter.MatchString(g) {
			continue
		}
		add(d.transform.Apply(g))
	}
	for _, r := range d.common {
		add(r)
	}
	return roles
}
