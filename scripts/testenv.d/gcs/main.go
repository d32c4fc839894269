// Command cilvest-fake-gcs is the GCS emulator of the local test environment (scripts/testenv.d/gcs.sh).
//
// It serves the fake-gcs-server library (github.com/fsouza/fake-gcs-server/fakestorage, pinned in go.mod)
// behind a thin front that adds the write side of the GCS XML API, which upstream does not serve but the
// object_store crate uses for every write:
//
//	PUT    /{bucket}/{object}                      upload; x-goog-copy-source copies; x-goog-if-generation-match
//	POST   /{bucket}/{object}?uploads              XML multipart: initiate
//	PUT    /{bucket}/{object}?partNumber=N&uploadId=U   upload a part
//	POST   /{bucket}/{object}?uploadId=U           complete (CompleteMultipartUpload XML body)
//	DELETE /{bucket}/{object}?uploadId=U           abort
//	GET    /{bucket}?list-type=2&prefix=&delimiter=&start-after=&max-keys=&continuation-token=
//
// Everything else (the JSON API, XML GET/HEAD/DELETE of objects, resumable uploads) goes to upstream unchanged.
// With -mirror DIR, every object written or deleted through the XML API is also written to (or removed from)
// DIR/{bucket}/{object}: the BigQuery emulator's load jobs read gs:// URIs from such a directory, so a lake on this
// emulator can be loaded the way a lake on GCS is.
// Written for tests: multipart parts are kept in memory, and conditional writes are serialized by one lock that
// JSON-API writes do not take.
package main

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

const s3Namespace = "http://s3.amazonaws.com/doc/2006-03-01/"

func main() {
	host := flag.String("host", "127.0.0.1", "address to bind")
	port := flag.Uint("port", 4443, "port to bind (plain http)")
	backendName := flag.String("backend", "memory", "storage backend: memory or filesystem")
	fsRoot := flag.String("filesystem-root", "", "root directory of the filesystem backend")
	publicHost := flag.String("public-host", "", "host:port the XML API is addressed as (default: host:port)")
	externalURL := flag.String("external-url", "", "base URL put in returned links (default: http://host:port)")
	location := flag.String("location", "US-CENTRAL1", "location reported for buckets")
	quiet := flag.Bool("quiet", false, "do not log every request")
	mirrorRoot := flag.String("mirror", "", "also keep every object written through the XML API under DIR/{bucket}/{object}")
	flag.Parse()

	addr := net.JoinHostPort(*host, strconv.FormatUint(uint64(*port), 10))
	if *publicHost == "" {
		*publicHost = addr
	}
	if *externalURL == "" {
		*externalURL = "http://" + addr
	}
	opts := fakestorage.Options{
		Scheme:          "http",
		Host:            *host,
		Port:            uint16(*port),
		NoListener:      true, // we own the listener, upstream only provides the handler
		PublicHost:      *publicHost,
		ExternalURL:     strings.TrimRight(*externalURL, "/"),
		BucketsLocation: *location,
	}
	switch *backendName {
	case "memory":
	case "filesystem":
		if *fsRoot == "" {
			log.Fatal("-backend filesystem needs -filesystem-root")
		}
		opts.StorageRoot = *fsRoot
	default:
		log.Fatalf("unknown backend %q (memory or filesystem)", *backendName)
	}
	srv, err := fakestorage.NewServerWithOptions(opts)
	if err != nil {
		log.Fatalf("fake-gcs-server: %v", err)
	}

	var handler http.Handler = &front{srv: srv, upstream: srv.HTTPHandler(), publicHost: *publicHost,
		uploads: map[string]*multipartUpload{}}
	if *mirrorRoot != "" {
		handler = &mirror{root: *mirrorRoot, srv: srv, next: handler}
	}
	if !*quiet {
		handler = logRequests(handler)
	}
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		_ = hs.Close()
	}()
	log.Printf("serving GCS (JSON API + XML API) on http://%s, public host %s, backend %s", addr, *publicHost, *backendName)
	if err := hs.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// mirror copies the outcome of every successful XML-API write or delete into a plain directory tree.
type mirror struct {
	root string
	srv  *fakestorage.Server
	next http.Handler
}

func (m *mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mutates := r.Method == http.MethodPut || r.Method == http.MethodPost || r.Method == http.MethodDelete
	if !mutates || !isXMLAPI(r.URL.Path) {
		m.next.ServeHTTP(w, r)
		return
	}
	rec := &statusRecorder{ResponseWriter: w}
	m.next.ServeHTTP(rec, r)
	bucket, object, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if rec.status < 300 && object != "" { // 0: nothing written explicitly, i.e. 200
		m.sync(bucket, object)
	}
}

// sync makes DIR/{bucket}/{object} what the emulator holds: the object's bytes, or nothing.
func (m *mirror) sync(bucket, object string) {
	path := filepath.Join(m.root, bucket, filepath.FromSlash(object))
	if rel, err := filepath.Rel(m.root, path); err != nil || strings.HasPrefix(rel, "..") {
		log.Printf("mirror: skipping %s/%s: outside the mirror", bucket, object)
		return
	}
	obj, err := m.srv.GetObject(bucket, object)
	if err != nil {
		_ = os.Remove(path)
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		log.Printf("mirror: %v", err)
		return
	}
	tmp := path + ".mirror-tmp"
	if err := os.WriteFile(tmp, obj.Content, 0o644); err != nil {
		log.Printf("mirror: %v", err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		log.Printf("mirror: %v", err)
	}
}

type front struct {
	srv        *fakestorage.Server
	upstream   http.Handler
	publicHost string

	writeMu sync.Mutex // serializes precondition check + write

	uploadsMu sync.Mutex
	uploads   map[string]*multipartUpload
}

type multipartUpload struct {
	bucket, name string
	attrs        fakestorage.ObjectAttrs
	mu           sync.Mutex
	parts        map[int]part
}

type part struct {
	etag string // unquoted
	data []byte
}

// Paths that belong to upstream's JSON API and internal endpoints; every other path is the XML API.
var jsonPrefixes = []string{"/storage/v1/", "/upload/", "/download/", "/batch/", "/_internal/"}

func isXMLAPI(path string) bool {
	if path == "/" || path == "/storage/v1" {
		return false
	}
	for _, p := range jsonPrefixes {
		if strings.HasPrefix(path, p) {
			return false
		}
	}
	return true
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !isXMLAPI(r.URL.Path) {
		f.upstream.ServeHTTP(w, r)
		return
	}
	// Upstream routes its XML API by Host; accept whatever name the client used for this address.
	r.Host = f.publicHost
	p := strings.TrimPrefix(r.URL.Path, "/")
	bucket, object, _ := strings.Cut(p, "/")
	q := r.URL.Query()
	switch {
	case object == "" && r.Method == http.MethodGet && !q.Has("uploads"):
		f.list(w, r, bucket)
	case object == "":
		f.upstream.ServeHTTP(w, r)
	case r.Method == http.MethodPost && q.Has("uploads"):
		f.initiate(w, r, bucket, object)
	case r.Method == http.MethodPut && q.Has("uploadId"):
		f.putPart(w, r, bucket, object)
	case r.Method == http.MethodPost && q.Has("uploadId"):
		f.complete(w, r, bucket, object)
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		f.abort(w, r, bucket, object)
	case r.Method == http.MethodPut:
		f.put(w, r, bucket, object)
	default: // GET/HEAD/DELETE of an object
		f.upstream.ServeHTTP(w, r)
	}
}

func xmlError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "%s<Error><Code>%s</Code><Message>%s</Message></Error>", xml.Header, code, xmlEscape(message))
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func writeXML(w http.ResponseWriter, v any) {
	body, err := xml.Marshal(v)
	if err != nil {
		xmlError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	// encoding/xml writes '"' in text as &#34;; GCS sends ETags as plain "...", which is equally valid XML.
	body = bytes.ReplaceAll(body, []byte("&#34;"), []byte(`"`))
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(body)
}

func (f *front) bucketExists(name string) bool {
	_, err := f.srv.Backend().GetBucket(name)
	return err == nil
}

// attrsFromHeaders reads the object metadata an XML upload carries in its headers.
func attrsFromHeaders(bucket, name string, h http.Header) fakestorage.ObjectAttrs {
	attrs := fakestorage.ObjectAttrs{
		BucketName:         bucket,
		Name:               name,
		ContentType:        h.Get("Content-Type"),
		ContentEncoding:    h.Get("Content-Encoding"),
		ContentDisposition: h.Get("Content-Disposition"),
		ContentLanguage:    h.Get("Content-Language"),
		CacheControl:       h.Get("Cache-Control"),
	}
	for k, v := range h {
		lk := strings.ToLower(k)
		if key, ok := strings.CutPrefix(lk, "x-goog-meta-"); ok && len(v) > 0 {
			if attrs.Metadata == nil {
				attrs.Metadata = map[string]string{}
			}
			attrs.Metadata[key] = v[0]
		}
	}
	if attrs.ContentType == "" {
		attrs.ContentType = "application/octet-stream"
	}
	return attrs
}

// preconditionFailed checks x-goog-if-generation-match against the current object; call with writeMu held.
func (f *front) preconditionFailed(r *http.Request, bucket, name string) (bool, error) {
	want := r.Header.Get("x-goog-if-generation-match")
	if want == "" {
		return false, nil
	}
	gen, err := strconv.ParseInt(want, 10, 64)
	if err != nil {
		return false, fmt.Errorf("invalid x-goog-if-generation-match %q", want)
	}
	current, err := f.srv.GetObject(bucket, name)
	if err != nil { // absent
		return gen != 0, nil
	}
	return current.Generation != gen, nil
}

// store writes the object and returns what upstream recorded for it (generation, etag, hashes).
func (f *front) store(attrs fakestorage.ObjectAttrs, content []byte) (fakestorage.ObjectAttrs, error) {
	obj := fakestorage.Object{ObjectAttrs: attrs, Content: content}
	if err := f.srv.CreateObjectStreaming(obj.StreamingObject()); err != nil {
		return fakestorage.ObjectAttrs{}, err
	}
	stored, err := f.srv.GetObject(attrs.BucketName, attrs.Name)
	if err != nil {
		return fakestorage.ObjectAttrs{}, err
	}
	return stored.ObjectAttrs, nil
}

func setObjectHeaders(w http.ResponseWriter, attrs fakestorage.ObjectAttrs) {
	h := w.Header()
	h.Set("ETag", strconv.Quote(attrs.Etag)) // same form as upstream's GET/HEAD
	h.Set("x-goog-generation", strconv.FormatInt(attrs.Generation, 10))
	h.Set("x-goog-metageneration", "1")
	h.Set("x-goog-hash", fmt.Sprintf("crc32c=%s,md5=%s", attrs.Crc32c, attrs.Md5Hash))
	h.Set("x-goog-stored-content-length", strconv.FormatInt(attrs.Size, 10))
}

// writeObject runs the precondition check and the write under writeMu and answers the request.
func (f *front) writeObject(w http.ResponseWriter, r *http.Request, attrs fakestorage.ObjectAttrs, content []byte) (fakestorage.ObjectAttrs, bool) {
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	failed, err := f.preconditionFailed(r, attrs.BucketName, attrs.Name)
	if err != nil {
		xmlError(w, http.StatusBadRequest, "InvalidArgument", err.Error())
		return attrs, false
	}
	if failed {
		xmlError(w, http.StatusPreconditionFailed, "PreconditionFailed",
			"At least one of the pre-conditions you specified did not hold.")
		return attrs, false
	}
	stored, err := f.store(attrs, content)
	if err != nil {
		xmlError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return attrs, false
	}
	setObjectHeaders(w, stored)
	return stored, true
}

func (f *front) put(w http.ResponseWriter, r *http.Request, bucket, name string) {
	if !f.bucketExists(bucket) {
		xmlError(w, http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist.")
		return
	}
	attrs := attrsFromHeaders(bucket, name, r.Header)
	var content []byte
	if src := r.Header.Get("x-goog-copy-source"); src != "" {
		srcBucket, srcName, err := parseCopySource(src)
		if err != nil {
			xmlError(w, http.StatusBadRequest, "InvalidArgument", err.Error())
			return
		}
		source, err := f.srv.GetObject(srcBucket, srcName)
		if err != nil {
			xmlError(w, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
			return
		}
		content = source.Content
		if !strings.EqualFold(r.Header.Get("x-goog-metadata-directive"), "REPLACE") {
			src := source.ObjectAttrs
			attrs.ContentType, attrs.ContentEncoding = src.ContentType, src.ContentEncoding
			attrs.ContentDisposition, attrs.ContentLanguage = src.ContentDisposition, src.ContentLanguage
			attrs.CacheControl, attrs.Metadata = src.CacheControl, src.Metadata
		}
	} else {
		var err error
		if content, err = io.ReadAll(r.Body); err != nil {
			xmlError(w, http.StatusBadRequest, "IncompleteBody", err.Error())
			return
		}
	}
	if _, ok := f.writeObject(w, r, attrs, content); ok {
		w.WriteHeader(http.StatusOK)
	}
}

// parseCopySource splits "bucket/object", each percent-encoded (a leading slash is allowed).
func parseCopySource(src string) (string, string, error) {
	bucket, object, ok := strings.Cut(strings.TrimPrefix(src, "/"), "/")
	if !ok || bucket == "" || object == "" {
		return "", "", fmt.Errorf("invalid x-goog-copy-source %q", src)
	}
	// object_store percent-encodes both parts (the bucket too: "my%2Dbucket/dir%2Ffile").
	bucketName, err := url.PathUnescape(bucket)
	if err != nil {
		return "", "", fmt.Errorf("invalid x-goog-copy-source %q: %v", src, err)
	}
	name, err := url.PathUnescape(object)
	if err != nil {
		return "", "", fmt.Errorf("invalid x-goog-copy-source %q: %v", src, err)
	}
	return bucketName, name, nil
}

type initiateResult struct {
	XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
	XMLNS    string   `xml:"xmlns,attr"`
	Bucket   string   `xml:"Bucket"`
	Key      string   `xml:"Key"`
	UploadID string   `xml:"UploadId"`
}

func (f *front) initiate(w http.ResponseWriter, r *http.Request, bucket, name string) {
	if !f.bucketExists(bucket) {
		xmlError(w, http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist.")
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)
	id := make([]byte, 24)
	if _, err := rand.Read(id); err != nil {
		xmlError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	uploadID := base64.RawURLEncoding.EncodeToString(id)
	f.uploadsMu.Lock()
	f.uploads[uploadID] = &multipartUpload{bucket: bucket, name: name,
		attrs: attrsFromHeaders(bucket, name, r.Header), parts: map[int]part{}}
	f.uploadsMu.Unlock()
	writeXML(w, initiateResult{XMLNS: s3Namespace, Bucket: bucket, Key: name, UploadID: uploadID})
}

// lookupUpload finds the upload named by ?uploadId and checks it belongs to this object.
func (f *front) lookupUpload(w http.ResponseWriter, r *http.Request, bucket, name string) (string, *multipartUpload) {
	uploadID := r.URL.Query().Get("uploadId")
	f.uploadsMu.Lock()
	u := f.uploads[uploadID]
	f.uploadsMu.Unlock()
	if u == nil || u.bucket != bucket || u.name != name {
		xmlError(w, http.StatusNotFound, "NoSuchUpload", "The specified multipart upload does not exist.")
		return uploadID, nil
	}
	return uploadID, u
}

func (f *front) putPart(w http.ResponseWriter, r *http.Request, bucket, name string) {
	n, err := strconv.Atoi(r.URL.Query().Get("partNumber"))
	if err != nil || n < 1 || n > 10000 {
		xmlError(w, http.StatusBadRequest, "InvalidArgument", "partNumber must be an integer between 1 and 10000")
		return
	}
	_, u := f.lookupUpload(w, r, bucket, name)
	if u == nil {
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		xmlError(w, http.StatusBadRequest, "IncompleteBody", err.Error())
		return
	}
	sum := md5.Sum(data)
	etag := hex.EncodeToString(sum[:])
	u.mu.Lock()
	u.parts[n] = part{etag: etag, data: data}
	u.mu.Unlock()
	w.Header().Set("ETag", strconv.Quote(etag))
	w.WriteHeader(http.StatusOK)
}

type completeRequest struct {
	Parts []struct {
		PartNumber int    `xml:"PartNumber"`
		ETag       string `xml:"ETag"`
	} `xml:"Part"`
}

type completeResult struct {
	XMLName  xml.Name `xml:"CompleteMultipartUploadResult"`
	XMLNS    string   `xml:"xmlns,attr"`
	Location string   `xml:"Location"`
	Bucket   string   `xml:"Bucket"`
	Key      string   `xml:"Key"`
	ETag     string   `xml:"ETag"`
}

func unquote(etag string) string { return strings.Trim(strings.TrimSpace(etag), `"`) }

func (f *front) complete(w http.ResponseWriter, r *http.Request, bucket, name string) {
	uploadID, u := f.lookupUpload(w, r, bucket, name)
	if u == nil {
		return
	}
	var req completeRequest
	if err := xml.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Parts) == 0 {
		xmlError(w, http.StatusBadRequest, "MalformedXML",
			"The XML you provided was not well-formed or did not validate against our published schema.")
		return
	}
	u.mu.Lock()
	var content bytes.Buffer
	last := 0
	for _, p := range req.Parts {
		stored, ok := u.parts[p.PartNumber]
		switch {
		case p.PartNumber <= last:
			u.mu.Unlock()
			xmlError(w, http.StatusBadRequest, "InvalidPartOrder", "The list of parts was not in ascending order.")
			return
		case !ok || unquote(p.ETag) != stored.etag:
			u.mu.Unlock()
			xmlError(w, http.StatusBadRequest, "InvalidPart",
				fmt.Sprintf("part %d was not uploaded or its ETag does not match", p.PartNumber))
			return
		}
		last = p.PartNumber
		content.Write(stored.data)
	}
	u.mu.Unlock()

	stored, ok := f.writeObject(w, r, u.attrs, content.Bytes())
	if !ok {
		return
	}
	f.uploadsMu.Lock()
	delete(f.uploads, uploadID)
	f.uploadsMu.Unlock()
	writeXML(w, completeResult{
		XMLNS:    s3Namespace,
		Location: fmt.Sprintf("http://%s/%s/%s", f.publicHost, bucket, url.PathEscape(name)),
		Bucket:   bucket,
		Key:      name,
		ETag:     strconv.Quote(stored.Etag),
	})
}

func (f *front) abort(w http.ResponseWriter, r *http.Request, bucket, name string) {
	uploadID, u := f.lookupUpload(w, r, bucket, name)
	if u == nil {
		return
	}
	f.uploadsMu.Lock()
	delete(f.uploads, uploadID)
	f.uploadsMu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

type listResult struct {
	XMLName               xml.Name       `xml:"ListBucketResult"`
	XMLNS                 string         `xml:"xmlns,attr"`
	Name                  string         `xml:"Name"`
	Prefix                string         `xml:"Prefix"`
	Delimiter             string         `xml:"Delimiter,omitempty"`
	StartAfter            string         `xml:"StartAfter,omitempty"`
	ContinuationToken     string         `xml:"ContinuationToken,omitempty"`
	MaxKeys               int            `xml:"MaxKeys"`
	KeyCount              int            `xml:"KeyCount"`
	IsTruncated           bool           `xml:"IsTruncated"`
	NextContinuationToken string         `xml:"NextContinuationToken,omitempty"`
	Contents              []listContents `xml:"Contents"`
	CommonPrefixes        []listPrefix   `xml:"CommonPrefixes"`
}

type listContents struct {
	Key            string `xml:"Key"`
	Generation     int64  `xml:"Generation"`
	MetaGeneration int64  `xml:"MetaGeneration"`
	LastModified   string `xml:"LastModified"`
	ETag           string `xml:"ETag"`
	Size           int64  `xml:"Size"`
}

type listPrefix struct {
	Prefix string `xml:"Prefix"`
}

// Continuation tokens name the last entry of the previous page: "o" + object name or "p" + common prefix.
func encodeToken(key string, isPrefix bool) string {
	kind := "o"
	if isPrefix {
		kind = "p"
	}
	return base64.RawURLEncoding.EncodeToString([]byte(kind + key))
}

func decodeToken(token string) (string, bool, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) == 0 || (raw[0] != 'o' && raw[0] != 'p') {
		return "", false, fmt.Errorf("invalid continuation-token")
	}
	return string(raw[1:]), raw[0] == 'p', nil
}

// list answers the XML API's bucket listing (list-type=2 and the older marker form), with paging.
func (f *front) list(w http.ResponseWriter, r *http.Request, bucket string) {
	q := r.URL.Query()
	prefix, delimiter := q.Get("prefix"), q.Get("delimiter")
	startAfter := q.Get("start-after")
	if startAfter == "" {
		startAfter = q.Get("marker")
	}
	maxKeys := 1000
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			xmlError(w, http.StatusBadRequest, "InvalidArgument", "max-keys must be a non-negative integer")
			return
		}
		maxKeys = min(n, 1000)
	}
	var after string
	var afterIsPrefix bool
	if token := q.Get("continuation-token"); token != "" {
		var err error
		if after, afterIsPrefix, err = decodeToken(token); err != nil {
			xmlError(w, http.StatusBadRequest, "InvalidArgument", err.Error())
			return
		}
	}
	if !f.bucketExists(bucket) {
		xmlError(w, http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist.")
		return
	}
	objects, _, err := f.srv.ListObjectsWithOptions(bucket, fakestorage.ListOptions{Prefix: prefix})
	if err != nil {
		xmlError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	sort.Slice(objects, func(i, j int) bool { return objects[i].Name < objects[j].Name })

	result := listResult{XMLNS: s3Namespace, Name: bucket, Prefix: prefix, Delimiter: delimiter,
		StartAfter: q.Get("start-after"), ContinuationToken: q.Get("continuation-token"), MaxKeys: maxKeys}
	lastKey, lastIsPrefix := "", false
	for _, o := range objects {
		if !strings.HasPrefix(o.Name, prefix) || (startAfter != "" && o.Name <= startAfter) {
			continue
		}
		if after != "" && (o.Name <= after || (afterIsPrefix && strings.HasPrefix(o.Name, after))) {
			continue
		}
		entry, isPrefix := o.Name, false
		if delimiter != "" {
			if i := strings.Index(o.Name[len(prefix):], delimiter); i >= 0 {
				entry, isPrefix = o.Name[:len(prefix)+i+len(delimiter)], true
			}
		}
		if isPrefix && lastIsPrefix && entry == lastKey {
			continue // more objects under the prefix just reported
		}
		if result.KeyCount == maxKeys {
			result.IsTruncated = maxKeys > 0
			break
		}
		result.KeyCount++
		if isPrefix {
			result.CommonPrefixes = append(result.CommonPrefixes, listPrefix{Prefix: entry})
		} else {
			result.Contents = append(result.Contents, listContents{
				Key:            o.Name,
				Generation:     o.Generation,
				MetaGeneration: 1,
				LastModified:   o.Updated.UTC().Format("2006-01-02T15:04:05.000Z"),
				ETag:           strconv.Quote(o.Etag),
				Size:           o.Size,
			})
		}
		lastKey, lastIsPrefix = entry, isPrefix
	}
	if result.IsTruncated {
		result.NextContinuationToken = encodeToken(lastKey, lastIsPrefix)
	}
	writeXML(w, result)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		log.Printf("%s %s %d %s", r.Method, r.URL.RequestURI(), rec.status, time.Since(start).Round(time.Microsecond))
	})
}
