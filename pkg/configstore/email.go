package configstore

// Kinds of the email channel's configuration.
const (
	KindSMTPProfile = "smtp-profile"
	// KindSMTPDefault is the one document per tenant that names its
	// default SMTP profile, so that changing the default is one write.
	KindSMTPDefault   = "smtp-default"
	KindEmailTemplate = "email-template"
	KindContact       = "contact"
)

// SMTPDefaultID is the id of a tenant's KindSMTPDefault document.
const SMTPDefaultID = "default"

// TLS modes of an SMTP profile.
const (
	TLSNone     = "none"     // plain SMTP
	TLSStartTLS = "starttls" // upgraded with STARTTLS, which must succeed
	TLSImplicit = "tls"      // TLS from the first byte (SMTPS)
)

// SMTPProfile is an SMTP server and the account a tenant sends email
// through, as LogiSense's SMTP settings. Its document is sealed: it holds
// the password.
type SMTPProfile struct {
	Name        string `json:"name"`
	Host        string `json:"host"`
	Port        int    `json:"port"`
	FromName    string `json:"fromName,omitempty"`
	FromAddress string `json:"fromAddress"`
	Username    string `json:"username,omitempty"`
	Password    string `json:"password,omitempty"`
	TLS         string `json:"tls"`
}

// SMTPDefault names a tenant's default SMTP profile.
type SMTPDefault struct {
	ProfileID string `json:"profileId"`
}

// DefaultSMTPProfile returns the tenant's default SMTP profile: the one its
// KindSMTPDefault document names, or, when that names none that exists,
// the oldest profile (ids grow with time). So a tenant with profiles has
// exactly one default at every moment, whatever order writes land in.
func (s *Store) DefaultSMTPProfile(tenant string) (Document, bool) {
	if d, ok := s.Get(tenant, KindSMTPDefault, SMTPDefaultID); ok {
		if p, ok := s.Get(tenant, KindSMTPProfile, Spec[SMTPDefault](d).ProfileID); ok {
			return p, true
		}
	}
	profiles := s.List(tenant, KindSMTPProfile)
	if len(profiles) == 0 {
		return Document{}, false
	}
	return profiles[0], true
}

// EmailTemplate is a canned email: Go templates over a notification for
// the subject (text/template), the HTML body (html/template) and the text
// body (text/template), and optionally its own sender and SMTP profile.
type EmailTemplate struct {
	Name     string `json:"name"`
	Subject  string `json:"subject"`
	HTMLBody string `json:"htmlBody,omitempty"`
	TextBody string `json:"textBody,omitempty"`
	// From replaces the SMTP profile's sender: an address, or a name and
	// an address ("Billing <billing@example.com>").
	From string `json:"from,omitempty"`
	// SMTPProfileID picks a profile other than the tenant's default.
	SMTPProfileID string `json:"smtpProfileId,omitempty"`
}

// Contact is the person of one contact type on one account; an account
// has at most one contact per type (LogiSense's contact types).
type Contact struct {
	AccountID string `json:"accountId"`
	Type      string `json:"type"`
	Name      string `json:"name"`
	Email     string `json:"email"`
}

// Contact types every tenant has; a tenant may use others of its own.
const (
	ContactBilling   = "billing"
	ContactService   = "service"
	ContactTechnical = "technical"
)

// ContactID is the document id of an account's contact of a type, so an
// account's contacts sort together.
func ContactID(accountID, contactType string) string { return accountID + "/" + contactType }

// Contact returns the account's contact of the type.
func (s *Store) Contact(tenant, accountID, contactType string) (Contact, bool) {
	d, ok := s.Get(tenant, KindContact, ContactID(accountID, contactType))
	if !ok {
		return Contact{}, false
	}
	return Spec[Contact](d), true
}
